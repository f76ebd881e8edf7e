/** Small HTTP helpers of the admin API: JSON replies, typed errors, bounded request bodies. */
import { randomUUID } from "node:crypto";
import { createWriteStream, rmSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const s = JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": String(Buffer.byteLength(s)),
    "cache-control": "no-store",
    ...headers,
  });
  res.end(s);
}

export function sendError(res: ServerResponse, status: number, code: string, message: string, details?: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(res, status, { error: { code, message, ...(details !== undefined ? { details } : {}) } });
}

/** One server-sent event (`event:` + one `data:` line of JSON) on an open event stream. */
export function sendSse(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/** Reads a small JSON body (bounded); 400 invalid_json / 413 body_too_large / 415 unsupported_media_type. */
export async function readJson(req: IncomingMessage, limit = 64 * 1024): Promise<unknown> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new ApiError(413, "body_too_large", `JSON body larger than ${limit} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  if (text.trim() === "") throw new ApiError(400, "invalid_json", "empty request body");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ApiError(400, "invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
  }
}

/**
 * Streams the request body to `{dir}/incoming-{uuid}.tar.gz`, at most `limit` bytes (413 past it, file removed).
 * Returns the file path.
 */
export async function receiveFile(req: IncomingMessage, dir: string, limit: number): Promise<string> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > limit)
    throw new ApiError(413, "body_too_large", `package larger than ${limit} bytes`, { limit });
  const file = join(dir, `incoming-${randomUUID()}.tar.gz`);
  let n = 0;
  const cap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > limit) cb(new ApiError(413, "body_too_large", `package larger than ${limit} bytes`, { limit }));
      else cb(null, chunk);
    },
  });
  try {
    await pipeline(req, cap, createWriteStream(file, { mode: 0o600 }));
  } catch (err) {
    rmSync(file, { force: true });
    if (err instanceof ApiError) throw err;
    throw new ApiError(400, "upload_failed", `upload interrupted: ${(err as Error).message}`);
  }
  if (n === 0) {
    rmSync(file, { force: true });
    throw new ApiError(400, "empty_body", 'the request body is empty (send the .tar.gz or JSON {"path": ...})');
  }
  return file;
}

export function mediaType(req: IncomingMessage): string {
  return (req.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
}
