/**
 * Static files of a plugin (its static dir) served on the main thread; one file is served by the SDK's `sendFile`
 * (realpath confinement, ETag, Range), which `Reply.file` replies use too.
 */
import { realpath, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { sendFile, sendJsonError } from "@hecate/sdk/runtime/send-file";

// Moved to the SDK (shared with the test harness's HTTP server); re-exported so the daemon's API is unchanged.
export { isInside, parseRange, type SendFileOptions, sendFile, sendJsonError } from "@hecate/sdk/runtime/send-file";

/**
 * Decodes an URL path (relative, still percent-encoded) into safe segments, or null when it tries anything odd:
 * `..`/`.` segments (plain or encoded), encoded `/` or `\`, a raw `\`, NUL, invalid percent-encoding.
 */
export function safeSegments(encodedRel: string): string[] | null {
  if (encodedRel.includes("\\")) return null;
  const out: string[] = [];
  for (const raw of encodedRel.split("/")) {
    if (raw === "") continue;
    let seg: string;
    try {
      seg = decodeURIComponent(raw);
    } catch {
      return null;
    }
    if (seg === "." || seg === ".." || /[/\\\0]/.test(seg)) return null;
    out.push(seg);
  }
  return out;
}

/** Serves `encodedRel` (percent-encoded path relative to `root`) from the directory `root`. */
export async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  root: string,
  encodedRel: string,
): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    return sendJsonError(res, 405, "method_not_allowed", "static files answer GET and HEAD only");
  }
  const segs = safeSegments(encodedRel);
  if (!segs) return sendJsonError(res, 400, "bad_path", "invalid path");
  // An upgrade replaces the package dir by two back-to-back renames; a lookup that ran on the thread pool between
  // them sees ENOENT. Looking up once more is enough: by the time its callback runs, both renames are done.
  const found = (await locate(root, segs)) ?? (await locate(root, segs));
  if (!found) return sendJsonError(res, 404, "not_found", "not found");
  return sendFile(req, res, found.target, found.realRoot, {});
}

async function locate(root: string, segs: string[]): Promise<{ realRoot: string; target: string } | null> {
  try {
    const realRoot = await realpath(root);
    let target = join(realRoot, ...segs);
    const st = await stat(target);
    if (st.isDirectory()) target = join(target, "index.html");
    return { realRoot, target };
  } catch {
    return null;
  }
}
