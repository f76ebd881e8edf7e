/**
 * Serving one file over node:http: realpath confinement to a root, ETag / If-None-Match (304), single Range (206 /
 * 416), Content-Disposition for downloads, content type, HEAD. Used by the daemon for static dirs and `Reply.file`,
 * and by the SDK test harness's real HTTP server, so a plugin's downloads behave the same in both.
 * Hand-written rather than `send`/`serve-static` (not installed): the confinement rules (encoded separators, NUL,
 * symlinks pointing out) are ours and must be checked on the real path, which those libraries do not do.
 */
import type { Stats } from "node:fs";
import { type FileHandle, open, realpath } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { basename, extname, sep } from "node:path";
import { pipeline } from "node:stream/promises";

/**
 * mime-types builds its tables from mime-db when it is loaded (tens of ms of CPU): loaded with the first file
 * served, not at the start of every process that may serve one (each plugin host).
 */
let mimeTypes: Promise<typeof import("mime-types")> | undefined;
const loadMimeTypes = () => {
  mimeTypes ??= import("mime-types");
  return mimeTypes;
};

export function sendJsonError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** True when `child` (a real path) is `root` or lies below it. */
export function isInside(root: string, child: string): boolean {
  return child === root || child.startsWith(root.endsWith(sep) ? root : root + sep);
}

export interface SendFileOptions {
  downloadName?: string;
  contentType?: string;
  /** Cache-Control, default `no-cache` (always revalidate with the ETag). */
  cacheControl?: string;
}

/**
 * Serves one file after checking its real path lies inside `realRoot` (itself a real path). Symlinks are allowed
 * only when they resolve inside the root.
 */
export async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  realRoot: string,
  options: SendFileOptions,
): Promise<void> {
  let fh: FileHandle | undefined;
  let st: Stats;
  let real: string;
  try {
    real = await realpath(path);
    if (!isInside(realRoot, real)) return sendJsonError(res, 403, "forbidden", "path outside the allowed root");
    fh = await open(real, "r");
    st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      return sendJsonError(res, 404, "not_found", "not found");
    }
  } catch {
    await fh?.close();
    return sendJsonError(res, 404, "not_found", "not found");
  }
  try {
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const type =
      options.contentType ??
      ((await loadMimeTypes()).contentType(extname(real) || basename(real)) || "application/octet-stream");
    const headers: Record<string, string | number> = {
      etag,
      "last-modified": st.mtime.toUTCString(),
      "cache-control": options.cacheControl ?? "no-cache",
      "accept-ranges": "bytes",
      "content-type": type,
      "x-content-type-options": "nosniff",
    };
    if (options.downloadName)
      headers["content-disposition"] = `attachment; filename*=UTF-8''${encodeURIComponent(options.downloadName)}`;
    const inm = req.headers["if-none-match"];
    if (inm?.split(",").some((t) => t.trim() === etag || t.trim() === `W/${etag}` || t.trim() === "*")) {
      delete headers["content-type"];
      res.writeHead(304, headers);
      res.end();
      return;
    }
    let start = 0;
    let end = st.size - 1;
    let status = 200;
    const range = req.headers.range;
    const ifRange = req.headers["if-range"];
    if (range && (!ifRange || ifRange === etag)) {
      const r = parseRange(range, st.size);
      if (r === "unsatisfiable") {
        res.writeHead(416, { "content-range": `bytes */${st.size}`, "content-length": 0 });
        res.end();
        return;
      }
      if (r) {
        [start, end] = r;
        status = 206;
        headers["content-range"] = `bytes ${start}-${end}/${st.size}`;
      }
    }
    headers["content-length"] = st.size === 0 ? 0 : end - start + 1;
    res.writeHead(status, headers);
    if (req.method === "HEAD" || st.size === 0) {
      res.end();
      return;
    }
    await pipeline(fh.createReadStream({ start, end, autoClose: false }), res);
  } catch {
    if (!res.headersSent) sendJsonError(res, 500, "read_failed", "could not read file");
    else res.destroy();
  } finally {
    await fh.close().catch(() => {});
  }
}

/** One `bytes=` range -> [start, end]; null means "ignore the header" (multi-range, other units, malformed). */
export function parseRange(header: string, size: number): [number, number] | "unsatisfiable" | null {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  const [, a, b] = m;
  if (a === "" && b === "") return null;
  let start: number;
  let end: number;
  if (a === "") {
    const n = Number(b);
    if (n === 0) return "unsatisfiable";
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === "" ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== "" && Number(b) < start) return null;
  }
  if (start >= size || size === 0) return "unsatisfiable";
  return [start, end];
}
