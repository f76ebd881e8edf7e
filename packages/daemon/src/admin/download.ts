/**
 * Downloads a plugin package from an `https://` URL (plain `http://` only to a loopback host) into the daemon's
 * incoming dir, bounded three ways: a size cap (Content-Length and the bytes actually read), one deadline for the
 * whole transfer (connect, redirects, headers, body) and a redirect limit. The optional sha256 pin is checked on the
 * bytes as they are written, before anything reads the archive. The file is then handed to the lifecycle like an
 * uploaded one, so every package check and refusal is the upload's.
 *
 * TLS is verified with Node's CA bundle (plus NODE_EXTRA_CA_CERTS given to the daemon process at start); an
 * operator (or a test with a throwaway CA) may add CAs with `HECATE_DOWNLOAD_CA_FILE` (PEM), read at each download.
 *
 * Redirects are followed here, not by undici's redirect interceptor: every hop must pass the same URL rules (no
 * downgrade from https to plain http on another host, no credentials in the URL), which the interceptor cannot check.
 */
import { createHash, randomUUID } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import { isIP } from "node:net";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher, request } from "undici";
import { HECATE_VERSION } from "../lifecycle/package-ops.js";

export type DownloadErrorCode =
  | "invalid_url"
  | "insecure_url"
  | "invalid_sha256"
  | "download_failed"
  | "too_many_redirects"
  | "download_too_large"
  | "download_timeout"
  | "sha256_mismatch";

/** HTTP status the admin API answers each code with. */
const STATUS: Record<DownloadErrorCode, number> = {
  invalid_url: 400,
  insecure_url: 400,
  invalid_sha256: 400,
  download_failed: 502,
  too_many_redirects: 502,
  download_too_large: 413,
  download_timeout: 504,
  sha256_mismatch: 422,
};

export class DownloadError extends Error {
  override name = "DownloadError";
  readonly status: number;
  constructor(
    readonly code: DownloadErrorCode,
    message: string,
    readonly details?: unknown,
    /** The whole downloaded file (sha256_mismatch only): the caller records its digest, then removes it. */
    readonly file?: string,
  ) {
    super(message);
    this.status = STATUS[code];
  }
}

export interface DownloadLimits {
  /** Largest package accepted (bytes). */
  maxBytes: number;
  /** One deadline for the whole download, redirects included (ms). */
  timeoutMs: number;
  /** Redirects followed at most. */
  maxRedirects: number;
  /** Extra trusted CAs (PEM text), added to Node's bundled ones. */
  ca?: string;
}

export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 5 * 60_000;
export const DEFAULT_MAX_REDIRECTS = 5;

/**
 * The limits from the environment, read at each download: HECATE_DOWNLOAD_MAX_BYTES (default `maxBytes`, the
 * upload cap), HECATE_DOWNLOAD_TIMEOUT_MS (5 min), HECATE_DOWNLOAD_MAX_REDIRECTS (5), HECATE_DOWNLOAD_CA_FILE.
 */
export function downloadLimits(maxBytes: number, env: NodeJS.ProcessEnv = process.env): DownloadLimits {
  const num = (name: string, dflt: number, min: number) => {
    const raw = env[name];
    if (raw === undefined || raw === "") return dflt;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} must be an integer >= ${min}, not ${raw}`);
    return n;
  };
  const caFile = env.HECATE_DOWNLOAD_CA_FILE;
  return {
    maxBytes: num("HECATE_DOWNLOAD_MAX_BYTES", maxBytes, 1),
    timeoutMs: num("HECATE_DOWNLOAD_TIMEOUT_MS", DEFAULT_DOWNLOAD_TIMEOUT_MS, 1),
    maxRedirects: num("HECATE_DOWNLOAD_MAX_REDIRECTS", DEFAULT_MAX_REDIRECTS, 0),
    ...(caFile ? { ca: readFileSync(caFile, "utf8") } : {}),
  };
}

/** A loopback host named literally (127.0.0.0/8, ::1) or `localhost`: the only hosts plain http:// may reach. */
function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h.endsWith(".localhost")) return true;
  if (isIP(h) === 4) return h.startsWith("127.");
  return h === "::1" || h === "0:0:0:0:0:0:0:1";
}

/** Parses and checks a package URL (also each redirect's target); throws invalid_url / insecure_url. */
export function checkPackageUrl(raw: string, base?: URL): URL {
  let url: URL;
  try {
    url = new URL(raw, base);
  } catch {
    throw new DownloadError("invalid_url", `not a URL: ${JSON.stringify(raw)}`, { field: "url" });
  }
  if (url.protocol !== "https:" && url.protocol !== "http:")
    throw new DownloadError("invalid_url", `only https:// package URLs are accepted, not ${url.protocol}`, {
      field: "url",
    });
  // They would land in events, logs and API answers: a secret has no place in a package URL.
  if (url.username || url.password)
    throw new DownloadError("invalid_url", "credentials in a package URL are not accepted", { field: "url" });
  if (url.protocol === "http:" && !isLoopback(url.hostname))
    throw new DownloadError(
      "insecure_url",
      `plain http:// is only accepted for a loopback host, not ${url.host}: use https://`,
      { field: "url", url: url.href },
    );
  url.hash = "";
  return url;
}

/** A sha256 pin: 64 hex digits (any case), returned lowercase; throws invalid_sha256. */
export function checkSha256(pin: string): string {
  if (!/^[0-9a-fA-F]{64}$/.test(pin))
    throw new DownloadError("invalid_sha256", "sha256 must be 64 hex digits", { field: "sha256" });
  return pin.toLowerCase();
}

export interface Downloaded {
  file: string;
  bytes: number;
  sha256: string;
  /** The URL the package was finally read from (after redirects). */
  finalUrl: string;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/**
 * Downloads `url` to `{dir}/incoming-{uuid}.tar.gz` (0600). Throws DownloadError; nothing is left in `dir` on failure
 * except the whole file of a sha256_mismatch (named by the error, for the caller to record and remove).
 */
export async function downloadPackage(
  rawUrl: string,
  dir: string,
  limits: DownloadLimits,
  pin?: string,
): Promise<Downloaded> {
  let url = checkPackageUrl(rawUrl);
  const expected = pin === undefined ? undefined : checkSha256(pin);
  const agent = new Agent({
    connect: limits.ca ? { ca: [...rootCertificates, limits.ca] } : {},
    keepAliveTimeout: 1,
  });
  const deadline = AbortSignal.timeout(limits.timeoutMs);
  const file = join(dir, `incoming-${randomUUID()}.tar.gz`);
  let keep = false;
  try {
    for (let hops = 0; ; hops++) {
      const res = await get(url, agent, deadline, limits.timeoutMs);
      if (REDIRECTS.has(res.statusCode)) {
        await res.body.dump().catch(() => {});
        const location = res.headers.location;
        if (typeof location !== "string")
          throw new DownloadError("download_failed", `${url.href}: ${res.statusCode} without a Location`, {
            status: res.statusCode,
          });
        if (hops >= limits.maxRedirects)
          throw new DownloadError("too_many_redirects", `more than ${limits.maxRedirects} redirects from ${rawUrl}`, {
            limit: limits.maxRedirects,
          });
        url = checkPackageUrl(location, url);
        continue;
      }
      if (res.statusCode < 200 || res.statusCode > 299) {
        await res.body.dump().catch(() => {});
        throw new DownloadError("download_failed", `${url.href} answered ${res.statusCode}`, {
          status: res.statusCode,
          url: url.href,
        });
      }
      const declared = Number(res.headers["content-length"]);
      if (Number.isFinite(declared) && declared > limits.maxBytes) {
        res.body.on("error", () => {}).destroy(); // not read: undici reports that as an error of the body
        throw tooLarge(limits.maxBytes, declared);
      }
      const { bytes, sha256 } = await save(res.body, file, limits.maxBytes);
      if (bytes === 0) throw new DownloadError("download_failed", `${url.href} sent an empty body`, { bytes });
      if (expected !== undefined && sha256 !== expected) {
        keep = true; // the caller records the refused file's digest, then removes it
        throw new DownloadError(
          "sha256_mismatch",
          `the package's sha256 is ${sha256}, not the pinned ${expected}`,
          { expected, actual: sha256 },
          file,
        );
      }
      keep = true;
      return { file, bytes, sha256, finalUrl: url.href };
    }
  } catch (err) {
    if (err instanceof DownloadError) throw err;
    const code = (err as { code?: string }).code;
    // The deadline decides; undici's own idle timers (set past it) only back it up.
    if (deadline.aborted || code === "UND_ERR_HEADERS_TIMEOUT" || code === "UND_ERR_BODY_TIMEOUT")
      throw new DownloadError("download_timeout", `download of ${rawUrl} not done within ${limits.timeoutMs} ms`, {
        timeoutMs: limits.timeoutMs,
      });
    const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
    const why = e.cause?.message ?? e.message;
    throw new DownloadError("download_failed", `cannot download ${url.href}: ${why}`, {
      url: url.href,
      ...(e.cause?.code || e.code ? { reason: e.cause?.code ?? e.code } : {}),
    });
  } finally {
    if (!keep) rmSync(file, { force: true });
    await agent.destroy().catch(() => {});
  }
}

function get(url: URL, agent: Agent, signal: AbortSignal, timeoutMs: number): Promise<Dispatcher.ResponseData> {
  return request(url, {
    method: "GET",
    dispatcher: agent,
    signal,
    headersTimeout: timeoutMs + 1000,
    bodyTimeout: timeoutMs + 1000,
    headers: {
      accept: "application/gzip, application/octet-stream;q=0.9, */*;q=0.1",
      "user-agent": `hecate/${HECATE_VERSION}`,
    },
  });
}

function tooLarge(limit: number, bytes: number): DownloadError {
  return new DownloadError("download_too_large", `package larger than ${limit} bytes`, { limit, bytes });
}

/**
 * Streams the body to `file` (exclusive create, 0600), hashing and counting; past `limit` bytes it stops. The file is
 * opened before and closed after the stream, so a failed download's file exists (and is removed) whatever the timing.
 */
async function save(
  body: NodeJS.ReadableStream,
  file: string,
  limit: number,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      if (bytes > limit) return cb(tooLarge(limit, bytes));
      hash.update(chunk);
      cb(null, chunk);
    },
  });
  const out = (await open(file, "wx", 0o600)).createWriteStream(); // closes its handle when done or destroyed
  const closed = new Promise<void>((resolve) => out.on("close", () => resolve()));
  try {
    await pipeline(body, meter, out);
  } finally {
    await closed;
  }
  return { bytes, sha256: hash.digest("hex") };
}
