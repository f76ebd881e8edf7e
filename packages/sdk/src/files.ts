/**
 * File uploads (multipart/form-data) streamed to disk, and downloads served by the host.
 *
 *   { method: "POST", path: "/attachments", handler: async (req) => {
 *       const { files, fields } = await files.receive(req, { limits: { maxFileBytes: 20 * 1024 * 1024 } });
 *       // files[0] = { id, field, name, size, mimeType, sha256, path } -> keep id/name in your read model
 *       return { status: 201, body: files.map(({ id, name, size }) => ({ id, name, size })) };
 *   } },
 *   { method: "GET", path: "/attachments/:id", handler: (req) => files.download(req.params.id, nameFromDb) },
 *
 * - Streamed: the request body goes through busboy straight into a file (the host's flow control slows the client
 *   down when the disk is slower than the network), so an upload never sits in memory whole.
 * - Limits per file, in total, on the number of files and on form fields. Going past one answers 413
 *   `payload_too_large` (details `{ limit, max }`) and removes every file of that request, including completed ones:
 *   a failed upload leaves nothing behind. Files are written as `.part-<id>` and renamed to `<id>` only when the whole
 *   request succeeded.
 * - Stored under a generated id (UUID) in the plugin's data dir (`<paths.data>/uploads` unless `dir` is given); the
 *   client's file name is only returned, sanitised (`sanitizeFilename`), never used as a path.
 * - `download(id, name)` returns a `Reply.file`: the host streams it with Content-Disposition (attachment, RFC 5987
 *   UTF-8 name), ETag / If-None-Match and Range.
 */
import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { mkdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { Busboy, type BusboyFileStream } from "@fastify/busboy";
import { getConfig } from "./config.js";
import type { PluginRequest, Reply } from "./contract.js";
import { HttpError } from "./contract.js";

export interface UploadLimits {
  /** Largest single file, in bytes (default 100 MiB). */
  maxFileBytes: number;
  /** All files of one request together, in bytes (default 500 MiB). */
  maxTotalBytes: number;
  /** Files per request (default 20). */
  maxFiles: number;
  /** Non-file form fields per request (default 100). */
  maxFields: number;
  /** Bytes of one form field's value (default 64 KiB). */
  maxFieldBytes: number;
}

export const DEFAULT_LIMITS: UploadLimits = {
  maxFileBytes: 100 * 1024 * 1024,
  maxTotalBytes: 500 * 1024 * 1024,
  maxFiles: 20,
  maxFields: 100,
  maxFieldBytes: 64 * 1024,
};

export interface StoredFile {
  /** Generated id: the file's name on disk. */
  id: string;
  /** Form field the file came in. */
  field: string;
  /** The client's file name, sanitised (for display and Content-Disposition only). */
  name: string;
  size: number;
  /** As declared by the client (not sniffed). */
  mimeType: string;
  /** Hex SHA-256 of the content, computed while streaming. */
  sha256: string;
  /** Absolute path of the stored file. */
  path: string;
}

export interface ReceiveOptions {
  /** Where files are stored (default `<getConfig().paths.data>/uploads`), created if missing. */
  dir?: string;
  limits?: Partial<UploadLimits>;
}

export interface ReceiveResult {
  files: StoredFile[];
  /** Non-file fields; a repeated field becomes an array. */
  fields: Record<string, string | string[]>;
}

/** Longest sanitised name, in UTF-8 bytes (common file systems allow 255). */
const MAX_NAME_BYTES = 200;
const ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The default upload dir of the plugin. */
export function uploadDir(): string {
  return join(getConfig().paths.data, "uploads");
}

/**
 * A file name safe to show and to put in Content-Disposition: NFC, no path (only the part after the last / or \),
 * no control or bidi-override characters, no leading dots (no `..`, no hidden files), at most 200 UTF-8 bytes
 * (keeping the extension when it can). Empty results become "file".
 */
export function sanitizeFilename(name: string, maxBytes = MAX_NAME_BYTES): string {
  let s = String(name).normalize("NFC");
  s = s.slice(Math.max(s.lastIndexOf("/"), s.lastIndexOf("\\")) + 1);
  // C0/C1 controls, DEL, and Unicode format chars that can disguise an extension (RLO "exe.txt" tricks).
  s = s.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g, "");
  s = s.replace(/[<>:"|?*]/g, "_");
  s = s.replace(/^[\s.]+/, "").replace(/[\s.]+$/, "");
  if (Buffer.byteLength(s) > maxBytes) {
    const dot = s.lastIndexOf(".");
    const ext = dot > 0 && s.length - dot <= 16 ? s.slice(dot) : "";
    let stem = ext ? s.slice(0, dot) : s;
    // Cut whole code points (never half a surrogate pair) until stem + ext fits.
    const points = [...stem];
    while (points.length && Buffer.byteLength(points.join("") + ext) > maxBytes) points.pop();
    stem = points.join("").replace(/[\s.]+$/, "");
    s = stem + ext;
  }
  return s === "" ? "file" : s;
}

/** Absolute path of a stored file; throws 404 for anything that is not a generated id (no path tricks). */
export function pathOf(id: string, dir = uploadDir()): string {
  if (!ID_RE.test(id)) throw new HttpError(404, "file_not_found", "no such file");
  return join(dir, id);
}

/** A reply that makes the host stream the stored file as a download (Content-Disposition, ETag, Range). */
export async function download(
  id: string,
  downloadName: string,
  options: { dir?: string; contentType?: string } = {},
): Promise<Reply> {
  const path = pathOf(id, options.dir);
  try {
    if (!(await stat(path)).isFile()) throw new Error("not a file");
  } catch {
    throw new HttpError(404, "file_not_found", "no such file");
  }
  return { file: { path, downloadName: sanitizeFilename(downloadName), contentType: options.contentType } };
}

/** Deletes a stored file; false when it was not there. */
export async function remove(id: string, dir?: string): Promise<boolean> {
  try {
    await unlink(pathOf(id, dir));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || err instanceof HttpError) return false;
    throw err;
  }
}

function tooLarge(limit: keyof UploadLimits, max: number): HttpError {
  return new HttpError(413, "payload_too_large", `upload exceeds ${limit} (${max})`, { limit, max });
}

/** Counts bytes (per file and for the request) and hashes them on their way to disk. */
class Meter extends Transform {
  bytes = 0;
  readonly hash = createHash("sha256");
  constructor(private readonly onBytes: (n: number) => HttpError | undefined) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    const err = this.onBytes(chunk.length);
    if (err) {
      cb(err);
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }
}

/**
 * Receives a multipart/form-data upload: every file part streamed to `dir` under a generated id, fields collected.
 * Throws 415 for another content type, 413 past a limit, 400 for a malformed body; on any failure no file of the
 * request is left on disk.
 */
export async function receive(req: PluginRequest, options: ReceiveOptions = {}): Promise<ReceiveResult> {
  const limits = { ...DEFAULT_LIMITS, ...options.limits };
  const contentType = String(req.headers["content-type"] ?? "");
  if (!/^multipart\/form-data\s*;/i.test(contentType))
    throw new HttpError(415, "unsupported_media_type", `expected multipart/form-data, got ${contentType || "none"}`);
  // A declared length beyond every limit together (plus room for part headers) is refused before reading anything.
  const declared = Number(req.headers["content-length"]);
  const ceiling =
    limits.maxTotalBytes +
    limits.maxFields * limits.maxFieldBytes +
    (limits.maxFiles + limits.maxFields + 1) * 16 * 1024;
  if (Number.isFinite(declared) && declared > ceiling) throw tooLarge("maxTotalBytes", limits.maxTotalBytes);

  const dir = options.dir ?? uploadDir();
  await mkdir(dir, { recursive: true });

  const files: StoredFile[] = [];
  const partPaths: string[] = [];
  const fields: Record<string, string | string[]> = Object.create(null);
  const writes: Promise<void>[] = [];
  // Settled once each part file's descriptor is closed. A write stream destroyed while its open() is still in flight
  // creates the file afterwards, so cleanup that only awaited the pipeline could unlink before the file existed.
  const closed: Promise<void>[] = [];
  const openStreams = new Set<BusboyFileStream>();
  let total = 0;
  let failure: Error | undefined;

  const body = req.stream();
  const bb = new Busboy({
    headers: { ...req.headers, "content-type": contentType },
    limits: {
      // One byte more than allowed, so "exactly the limit" passes and "over" is seen as truncation.
      fileSize: limits.maxFileBytes + 1,
      files: limits.maxFiles,
      fields: limits.maxFields,
      fieldSize: limits.maxFieldBytes,
      parts: limits.maxFiles + limits.maxFields,
    },
  });

  const done = new Promise<void>((resolve, reject) => {
    const fail = (err: Error) => {
      if (!failure) {
        failure = err;
        // Stop reading the client; the host answers as soon as the handler throws.
        body.unpipe(bb);
        body.destroy();
        bb.destroy();
        // busboy does not end its file streams when destroyed: end them, so their pipelines settle.
        for (const stream of openStreams) stream.destroy(err);
      }
      reject(failure);
    };
    bb.on("file", (field: string, stream: BusboyFileStream, filename: string, _enc: string, mimeType: string) => {
      // A form's empty file input arrives as a part with an empty file name: nothing was chosen.
      if (failure || filename === "") {
        stream.resume();
        return;
      }
      const id = randomUUID();
      const part = join(dir, `.part-${id}`);
      openStreams.add(stream);
      partPaths.push(part);
      const meter = new Meter((n) => {
        total += n;
        if (meter.bytes > limits.maxFileBytes) return tooLarge("maxFileBytes", limits.maxFileBytes);
        if (total > limits.maxTotalBytes) return tooLarge("maxTotalBytes", limits.maxTotalBytes);
        return undefined;
      });
      const out = createWriteStream(part, { flags: "wx", mode: 0o600 });
      closed.push(new Promise((resolve) => out.once("close", () => resolve())));
      const write = pipeline(stream, meter, out).then(
        () => {
          openStreams.delete(stream);
          files.push({
            id,
            field,
            name: sanitizeFilename(filename ?? ""),
            size: meter.bytes,
            mimeType: mimeType || "application/octet-stream",
            sha256: meter.hash.digest("hex"),
            path: join(dir, id),
          });
        },
        (err: Error) => {
          openStreams.delete(stream);
          fail(err instanceof HttpError ? err : new HttpError(400, "bad_upload", err.message));
        },
      );
      writes.push(write);
    });
    bb.on("field", (name: string, value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
      if (valueTruncated) return fail(tooLarge("maxFieldBytes", limits.maxFieldBytes));
      const prev = fields[name];
      fields[name] = prev === undefined ? value : Array.isArray(prev) ? [...prev, value] : [prev, value];
    });
    bb.on("filesLimit", () => fail(tooLarge("maxFiles", limits.maxFiles)));
    bb.on("fieldsLimit", () => fail(tooLarge("maxFields", limits.maxFields)));
    bb.on("partsLimit", () => fail(tooLarge("maxFiles", limits.maxFiles)));
    bb.on("error", (err: unknown) =>
      fail(new HttpError(400, "bad_upload", `malformed multipart body: ${String((err as Error)?.message ?? err)}`)),
    );
    let ended = false;
    body.on("end", () => {
      ended = true;
    });
    body.on("error", (err: Error) => fail(err));
    // The host destroys the body stream when the client goes away mid-upload: that is a failure, not an end.
    body.on("close", () => {
      if (!ended) fail(new HttpError(400, "upload_aborted", "the upload was interrupted"));
    });
    // busboy's finish = the whole body parsed; the files may still be flushing to disk.
    bb.on("finish", () => {
      void Promise.all(writes).then(() => (failure ? reject(failure) : resolve()));
    });
  });
  body.pipe(bb);

  try {
    await done;
    // Everything arrived within the limits: give the parts their final names.
    for (const f of files) await rename(join(dir, `.part-${f.id}`), f.path);
  } catch (err) {
    await Promise.allSettled(writes);
    await Promise.all(closed);
    await Promise.all([...partPaths, ...files.map((f) => f.path)].map((p) => unlink(p).catch(() => {})));
    throw err;
  }
  files.sort((a, b) => partPaths.indexOf(join(dir, `.part-${a.id}`)) - partPaths.indexOf(join(dir, `.part-${b.id}`)));
  return { files, fields: { ...fields } };
}
