/**
 * `oci://REGISTRY/REPO[:TAG|@sha256:DIGEST]` references of container plugins installed from a registry.
 *
 * Written here rather than taken from a library: the grammar is the distribution spec's (lower-case repository path
 * components, tags of [\w][\w.-]{0,127}, sha256 digests) and a registry host is required (no Docker Hub default, no
 * short names: an install must say where the image comes from).
 */
import { isIP } from "node:net";

export interface OciReference {
  /** `host[:port]` as written (lower case). */
  registry: string;
  /** Repository path, e.g. `team/echo`. */
  repository: string;
  tag: string | null;
  digest: string | null;
}

export class OciReferenceError extends Error {
  readonly code = "invalid_reference";
  constructor(message: string) {
    super(message);
    this.name = "OciReferenceError";
  }
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[a-f0-9]{64}$/;
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:]+\])(?::\d{1,5})?$/;

export const OCI_SCHEME = "oci://";

export function isOciReference(source: string): boolean {
  return source.startsWith(OCI_SCHEME);
}

export function parseOciReference(source: string): OciReference {
  if (!isOciReference(source)) throw new OciReferenceError(`an OCI reference starts with ${OCI_SCHEME}: ${source}`);
  let rest = source.slice(OCI_SCHEME.length);
  let digest: string | null = null;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new OciReferenceError(`invalid digest ${JSON.stringify(digest)} (sha256:<64 hex>)`);
  }
  const slash = rest.indexOf("/");
  if (slash <= 0) throw new OciReferenceError(`${source}: expected oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]`);
  const registry = rest.slice(0, slash).toLowerCase();
  let path = rest.slice(slash + 1);
  let tag: string | null = null;
  const colon = path.lastIndexOf(":");
  if (colon >= 0) {
    tag = path.slice(colon + 1);
    path = path.slice(0, colon);
    if (!TAG.test(tag)) throw new OciReferenceError(`invalid tag ${JSON.stringify(tag)}`);
  }
  if (!HOST.test(registry)) throw new OciReferenceError(`invalid registry host ${JSON.stringify(registry)}`);
  if (!path || path.length > 255 || !path.split("/").every((c) => COMPONENT.test(c)))
    throw new OciReferenceError(`invalid repository ${JSON.stringify(path)} (lower-case path components)`);
  if (!tag && !digest) tag = "latest";
  return { registry, repository: path, tag, digest };
}

/** `oci://host/repo:tag` / `oci://host/repo@sha256:…` (tag dropped when a digest is given: the digest wins). */
export function formatOciReference(r: OciReference): string {
  return `${OCI_SCHEME}${r.registry}/${r.repository}${r.digest ? `@${r.digest}` : `:${r.tag ?? "latest"}`}`;
}

/** The image name Podman pulls and runs: `host/repo@sha256:…` (pinned). */
export function pinnedImage(r: OciReference, digest: string): string {
  return `${r.registry}/${r.repository}@${digest}`;
}

/** Host part of `host[:port]` without brackets. */
export function registryHost(registry: string): string {
  const m = registry.match(/^\[([^\]]+)\](?::\d+)?$/);
  if (m) return m[1];
  const colon = registry.lastIndexOf(":");
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/** 127.0.0.0/8, ::1 and `localhost`: the only registries spoken to over plain HTTP without an explicit setting. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registryHost(registry);
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  return host === "::1";
}
