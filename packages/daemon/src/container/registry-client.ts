/**
 * Resolves an `oci://` reference before anything is pulled: the image manifest's digest (what gets pinned and
 * recorded), its layers (count and size: the pull's progress totals) and the plugin manifest the image carries.
 *
 * How the plugin manifest travels with the image: an OCI image-config label `io.hecate.manifest` holding the plugin's
 * manifest.json as JSON (`LABEL io.hecate.manifest='{"name":…}'` in a Containerfile, `--label` to `podman build`).
 * A label is part of the image config, so it is covered by the image digest, readable from the registry before the
 * layers are pulled (a bad manifest is refused before any download) and by inspecting the pulled image.
 *
 * Distribution API v2 over undici (written here: the few requests an install needs, with Basic auth and the
 * registry token flow (`WWW-Authenticate: Bearer realm=…`), are less code than adapting a registry library).
 */
import { createHash } from "node:crypto";
import { request } from "undici";
import { type OciReference, registryHost } from "./oci-reference.js";
import type { RegistryCredentials } from "./registry-config.js";

export const MANIFEST_LABEL = "io.hecate.manifest";

const MANIFEST_TYPES = [
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
];
const MAX_MANIFEST = 4 * 1024 * 1024;
const MAX_CONFIG = 4 * 1024 * 1024;

/** Why a reference could not be resolved (`code` goes into the refusal event and the API error). */
export class RegistryError extends Error {
  constructor(
    readonly code:
      | "registry_unreachable"
      | "registry_error"
      | "unauthorized"
      | "manifest_unknown"
      | "digest_mismatch"
      | "unsupported_image"
      | "no_plugin_manifest",
    message: string,
  ) {
    super(message);
    this.name = "RegistryError";
  }
}

export interface ResolvedImage {
  /** sha256 of the manifest (or index) the reference names: what the install pins. */
  digest: string;
  layers: { digest: string; size: number }[];
  /** The `io.hecate.manifest` label, parsed (validated by the caller). */
  pluginManifest: unknown;
}

export interface RegistryAccess {
  plainHttp: boolean;
  credentials: RegistryCredentials | null;
  timeoutMs?: number;
}

interface Fetched {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

class RegistrySession {
  private token: string | undefined;
  private readonly base: string;

  constructor(
    private readonly ref: OciReference,
    private readonly access: RegistryAccess,
  ) {
    this.base = `${access.plainHttp ? "http" : "https"}://${ref.registry}`;
  }

  private async fetch(url: string, accept: string[], limit: number, auth?: string, redirects = 3): Promise<Fetched> {
    let r: Awaited<ReturnType<typeof request>>;
    const timeout = this.access.timeoutMs ?? 15_000;
    try {
      r = await request(url, {
        headers: { accept: accept.join(", "), ...(auth ? { authorization: auth } : {}) },
        headersTimeout: timeout,
        bodyTimeout: timeout,
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new RegistryError(
        "registry_unreachable",
        `registry ${this.ref.registry} is unreachable: ${cause?.code ?? cause?.message ?? (err as Error).message}`,
      );
    }
    if (r.statusCode >= 300 && r.statusCode < 400 && typeof r.headers.location === "string" && redirects > 0) {
      await r.body.dump();
      // Blob redirects (to storage) carry their own signature: no Authorization is sent to another origin.
      const next = new URL(r.headers.location, url);
      return this.fetch(
        next.href,
        accept,
        limit,
        next.origin === new URL(url).origin ? auth : undefined,
        redirects - 1,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of r.body) {
      size += (c as Buffer).length;
      if (size > limit) {
        r.body.destroy();
        throw new RegistryError("unsupported_image", `registry answer larger than ${limit} bytes`);
      }
      chunks.push(c as Buffer);
    }
    return { status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks) };
  }

  /** A GET with the registry's auth: Basic, or a bearer token from its realm (Basic credentials for the token). */
  async get(path: string, accept: string[], limit: number): Promise<Fetched> {
    const url = `${this.base}/v2/${this.ref.repository}/${path}`;
    let r = await this.fetch(url, accept, limit, this.authorization());
    if (r.status !== 401) return r;
    const challenge = String(r.headers["www-authenticate"] ?? "");
    if (/^bearer /i.test(challenge) && !this.token) {
      this.token = await this.bearerToken(challenge);
      r = await this.fetch(url, accept, limit, this.authorization());
    } else if (/^basic /i.test(challenge) && this.access.credentials && !this.token) {
      r = await this.fetch(url, accept, limit, this.basic());
    }
    if (r.status === 401 || r.status === 403)
      throw new RegistryError(
        "unauthorized",
        this.access.credentials
          ? `registry ${this.ref.registry} refused the credentials set for it`
          : `registry ${this.ref.registry} requires credentials: set them with \`hecate registry login ${this.ref.registry}\``,
      );
    return r;
  }

  private basic(): string | undefined {
    const c = this.access.credentials;
    return c ? `Basic ${Buffer.from(`${c.username}:${c.password}`).toString("base64")}` : undefined;
  }

  private authorization(): string | undefined {
    return this.token ? `Bearer ${this.token}` : this.basic();
  }

  private async bearerToken(challenge: string): Promise<string> {
    const params = Object.fromEntries(
      [...challenge.slice(7).matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1].toLowerCase(), m[2]]),
    );
    if (!params.realm) throw new RegistryError("registry_error", "registry token challenge without a realm");
    const url = new URL(params.realm);
    if (
      url.protocol !== "https:" &&
      !(this.access.plainHttp && registryHost(url.host) === registryHost(this.ref.registry))
    )
      throw new RegistryError("registry_error", `registry token realm ${url.origin} is not https`);
    if (params.service) url.searchParams.set("service", params.service);
    url.searchParams.set("scope", params.scope ?? `repository:${this.ref.repository}:pull`);
    const r = await this.fetch(url.href, ["application/json"], 1024 * 1024, this.basic());
    if (r.status === 401 || r.status === 403)
      throw new RegistryError("unauthorized", `registry ${this.ref.registry} refused a token`);
    const body = JSON.parse(r.body.toString("utf8")) as { token?: string; access_token?: string };
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryError("registry_error", "registry token answer without a token");
    return token;
  }
}

const sha256 = (b: Buffer) => `sha256:${createHash("sha256").update(b).digest("hex")}`;

interface ManifestDoc {
  mediaType?: string;
  config?: { digest: string; size: number };
  layers?: { digest: string; size: number }[];
  manifests?: { digest: string; mediaType?: string; platform?: { os?: string; architecture?: string } }[];
}

function registryFailure(r: Fetched, what: string): RegistryError {
  let detail = r.body.toString("utf8").slice(0, 300);
  try {
    const e = JSON.parse(detail) as { errors?: { code?: string; message?: string }[] };
    detail = e.errors?.map((x) => `${x.code}: ${x.message}`).join("; ") ?? detail;
  } catch {}
  if (r.status === 404) return new RegistryError("manifest_unknown", `${what}: not found in the registry (${detail})`);
  return new RegistryError("registry_error", `${what}: registry answered ${r.status} (${detail})`);
}

/**
 * Resolves `ref` (by tag: the registry's current digest; by digest: checked against the manifest's bytes). An index
 * (multi-platform) is pinned as is; its linux entry for this machine's architecture gives layers and labels.
 */
export async function resolveImage(ref: OciReference, access: RegistryAccess): Promise<ResolvedImage> {
  const session = new RegistrySession(ref, access);
  const name = `${ref.registry}/${ref.repository}${ref.digest ? `@${ref.digest}` : `:${ref.tag}`}`;
  const top = await session.get(`manifests/${ref.digest ?? ref.tag}`, MANIFEST_TYPES, MAX_MANIFEST);
  if (top.status !== 200) throw registryFailure(top, name);
  const digest = sha256(top.body);
  if (ref.digest && digest !== ref.digest)
    throw new RegistryError("digest_mismatch", `${name}: the registry's manifest has digest ${digest}`);
  const announced = top.headers["docker-content-digest"];
  if (!ref.digest && typeof announced === "string" && announced !== digest)
    throw new RegistryError("digest_mismatch", `${name}: manifest bytes hash to ${digest}, registry says ${announced}`);
  let doc = JSON.parse(top.body.toString("utf8")) as ManifestDoc;
  if (doc.manifests) {
    const arch = process.arch === "x64" ? "amd64" : process.arch;
    const entry = doc.manifests.find((m) => m.platform?.os === "linux" && m.platform.architecture === arch);
    if (!entry) throw new RegistryError("unsupported_image", `${name}: no linux/${arch} image in the index`);
    const sub = await session.get(`manifests/${entry.digest}`, MANIFEST_TYPES, MAX_MANIFEST);
    if (sub.status !== 200) throw registryFailure(sub, `${name} (linux/${arch})`);
    if (sha256(sub.body) !== entry.digest)
      throw new RegistryError("digest_mismatch", `${name}: platform manifest does not match ${entry.digest}`);
    doc = JSON.parse(sub.body.toString("utf8")) as ManifestDoc;
  }
  if (!doc.config?.digest || !Array.isArray(doc.layers))
    throw new RegistryError("unsupported_image", `${name}: not an image manifest (${doc.mediaType ?? "unknown type"})`);
  const cfg = await session.get(`blobs/${doc.config.digest}`, ["*/*"], MAX_CONFIG);
  if (cfg.status !== 200) throw registryFailure(cfg, `${name} config`);
  if (sha256(cfg.body) !== doc.config.digest)
    throw new RegistryError("digest_mismatch", `${name}: image config does not match ${doc.config.digest}`);
  const config = JSON.parse(cfg.body.toString("utf8")) as { config?: { Labels?: Record<string, string> } };
  const label = config.config?.Labels?.[MANIFEST_LABEL];
  if (typeof label !== "string")
    throw new RegistryError(
      "no_plugin_manifest",
      `${name} carries no plugin manifest: build it with LABEL ${MANIFEST_LABEL}='<manifest.json as JSON>'`,
    );
  let pluginManifest: unknown;
  try {
    pluginManifest = JSON.parse(label);
  } catch (err) {
    throw new RegistryError(
      "no_plugin_manifest",
      `${name}: label ${MANIFEST_LABEL} is not JSON (${(err as Error).message})`,
    );
  }
  return { digest, layers: doc.layers.map((l) => ({ digest: l.digest, size: l.size })), pluginManifest };
}
