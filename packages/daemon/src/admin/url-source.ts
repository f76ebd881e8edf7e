/**
 * Install / upgrade from a URL: the JSON body `{"url": "https://…/x.tar.gz", "sha256": "<hex>"}` of the install and
 * upgrade routes. The daemon downloads the package (admin/download.ts: size cap, deadline, redirect limit, pin)
 * into the incoming dir; from there it is an upload like any other.
 */
import { checkPackageUrl, downloadLimits, downloadPackage } from "./download.js";
import { ApiError } from "./http.js";

export interface UrlRequest {
  url: string;
  sha256?: string;
}

/** Where a refused package came from, as the refusal records it. */
export interface RefusalOrigin {
  source: "upload" | "path" | "url";
  url?: string;
}

/** True when a JSON install body asks for a download (has a `url` field). */
export function isUrlRequest(body: object): boolean {
  return !Array.isArray(body) && "url" in body;
}

/** Checks the body's shape: `url` a string, `sha256` an optional string, nothing else (400 invalid_body). */
export function parseUrlRequest(body: Record<string, unknown>): UrlRequest {
  const errors: { field: string; message: string }[] = [];
  if (typeof body.url !== "string" || body.url === "") errors.push({ field: "url", message: "must be a URL string" });
  if (body.sha256 !== undefined && typeof body.sha256 !== "string")
    errors.push({ field: "sha256", message: "must be a string of 64 hex digits" });
  for (const k of Object.keys(body))
    if (k !== "url" && k !== "sha256") errors.push({ field: k, message: "unknown property (expected url, sha256)" });
  if (errors.length)
    throw new ApiError(
      400,
      "invalid_body",
      'JSON body must be {"url": "https://…/x.tar.gz", "sha256"?: "<hex>"}',
      errors,
    );
  return { url: body.url as string, ...(body.sha256 !== undefined ? { sha256: body.sha256 as string } : {}) };
}

/** The URL as events and logs may show it: parsed, without user info or fragment (undefined when unparsable). */
function recordable(raw: string): string | undefined {
  try {
    const u = new URL(raw);
    u.username = "";
    u.password = "";
    u.hash = "";
    return u.href;
  } catch {
    return undefined;
  }
}

/**
 * Downloads the package a `{url, sha256?}` body names into `dir`; returns the file and the URL as the install's
 * source (the URL asked for, not the last redirect's: what the operator can repeat, recorded as package_url).
 * Fills in `origin` for the refusal record as soon as the body is known to be a URL request.
 */
export async function receiveFromUrl(
  body: Record<string, unknown>,
  origin: RefusalOrigin,
  dir: string,
  maxBytes: number,
): Promise<{ file: string; source: string }> {
  origin.source = "url";
  const req = parseUrlRequest(body);
  origin.url = recordable(req.url);
  let limits: ReturnType<typeof downloadLimits>;
  try {
    limits = downloadLimits(maxBytes);
  } catch (err) {
    throw new ApiError(500, "download_misconfigured", (err as Error).message);
  }
  const { file } = await downloadPackage(req.url, dir, limits, req.sha256);
  return { file, source: checkPackageUrl(req.url).href };
}
