/**
 * Reading plugin packages (.tar.gz) safely: every entry checked at header time, accepted entries handed to a sink.
 *
 * node-tar's Parser reads the archive (headers, pax/GNU long names, checksums) in strict mode, but we do not use its
 * Unpack: Unpack skips (rather than refuses) suspicious entries, strips absolute paths and still extracts, keeps
 * setuid bits, and does its file I/O asynchronously, so after an abort there is no point where we know it has stopped
 * touching the disk. Here every entry is validated at header time and either refused (the whole archive fails with a
 * PackageError) or written by us, synchronously, inside the staging dir only: the extraction is over the moment the
 * parser stops, and the staging dir can be removed safely.
 */
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  createReadStream,
  fchmodSync,
  constants as fsc,
  futimesSync,
  mkdirSync,
  openSync,
  type Stats,
  writeSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { resolve, sep } from "node:path";
import { crc32, createInflateRaw } from "node:zlib";
import { Parser, type ReadEntry } from "tar";
import { PackageError, type PackageErrorCode } from "./errors.js";
import { checkGzipTrailer, gzipHeaderLength, MAX_GZIP_HEADER } from "./gzip-member.js";

export interface ExtractLimits {
  /** Entries in the archive (files and directories). */
  maxEntries: number;
  /** Declared size of one file. */
  maxFileBytes: number;
  /** Sum of declared file sizes; the decompressed stream as a whole is also capped near this (headers included). */
  maxTotalBytes: number;
  /** Decompressed bytes / compressed bytes read so far, checked while streaming. */
  maxCompressionRatio: number;
  /** UTF-8 bytes of one entry path. */
  maxPathBytes: number;
  /** Path segments of one entry. */
  maxDepth: number;
}

const MiB = 1024 * 1024;

/**
 * Container packages may carry an OCI image archive, hence the generous per-file and total caps. Entries (files and
 * dirs): in-process plugins ship their production node_modules, and one popular library alone can hold thousands
 * of files (date-fns ~7,000, rxjs ~3,000); 50,000 admits a realistic dependency tree while still bounding the
 * inodes and the extraction time (small files are written at several thousand per second).
 */
export const DEFAULT_LIMITS: Readonly<ExtractLimits> = Object.freeze({
  maxEntries: 50_000,
  maxFileBytes: 512 * MiB,
  maxTotalBytes: 1024 * MiB,
  maxCompressionRatio: 200,
  maxPathBytes: 1024,
  maxDepth: 32,
});

/** Largest manifest.json accepted (it is read into memory). */
export const MAX_MANIFEST_BYTES = 256 * 1024;

/** Below this many decompressed bytes the ratio is not judged (small archives of tiny files compress very well). */
const RATIO_GRACE_BYTES = MiB;
/** pax / GNU long-name records larger than this are refused (names are capped at maxPathBytes anyway). */
const MAX_META_BYTES = 64 * 1024;
/** Decompressed bytes allowed per entry beyond its data: header, pax header and its record, padding. */
const PER_ENTRY_OVERHEAD = 4096;
/** Longest single path segment (Linux NAME_MAX). */
const MAX_SEGMENT_BYTES = 255;

const FILE_TYPES = new Set(["File", "OldFile", "ContiguousFile"]);
const LINK_TYPES = new Set(["Link", "SymbolicLink"]);

export interface AcceptedEntry {
  kind: "file" | "dir";
  /** Normalised relative path (POSIX, no `.` segments). */
  rel: string;
  segments: string[];
  /** Normalised mode: 0o644 / 0o755. */
  mode: number;
  mtime?: Date;
  size: number;
}

/** Where accepted entries go: onto disk (extract) or into memory (manifest read). Everything here is synchronous. */
export interface EntrySink {
  dir(e: AcceptedEntry): void;
  /** Called once the entry's data begins; return a writer fed every chunk, closed at the entry's end. */
  file(e: AcceptedEntry): { write(chunk: Buffer): void; close(): void };
  /** Release anything open after a failure. */
  abort(): void;
}

export interface ScanStats {
  entries: number;
  files: number;
  /** Bytes of file data. */
  bytes: number;
  compressedBytes: number;
  decompressedBytes: number;
}

function refuse(code: PackageErrorCode, message: string, entry?: string): PackageError {
  return new PackageError(code, message, entry === undefined ? undefined : { entry });
}

const byteLength = (s: string) => Buffer.byteLength(s, "utf8");

/** Characters that matter for path resolution; a name whose NFKC form has more of them uses look-alikes. */
const PATH_SIGNIFICANT = /[./\\:]/g;

/**
 * Validates an entry name and returns its segments. Order matters only for which code a name with several
 * problems gets; every check refuses.
 */
export function checkEntryName(name: string, limits: ExtractLimits): string[] {
  if (name.includes("\0")) throw refuse("corrupt_header", "NUL byte in entry name", name);
  if (byteLength(name) > limits.maxPathBytes)
    throw refuse("name_too_long", `entry name longer than ${limits.maxPathBytes} bytes`, name);
  if (/^[/\\]/.test(name) || /^[A-Za-z]:/.test(name))
    throw refuse("absolute_path", `absolute entry name ${JSON.stringify(name)}`, name);
  if (name.includes("\\"))
    throw refuse("path_traversal", `backslash (Windows path separator) in entry name ${JSON.stringify(name)}`, name);
  if (/%(?:25)*(?:2e|2f|5c|00)/i.test(name))
    throw refuse("path_traversal", `percent-encoded dot, separator or NUL in entry name ${JSON.stringify(name)}`, name);
  if (name.includes("\uFFFD"))
    throw refuse("path_traversal", "entry name is not valid UTF-8 (overlong or broken encoding)", name);
  if (/[\u0001-\u001f\u007f]/.test(name)) throw refuse("corrupt_header", "control character in entry name", name);
  const nfkc = name.normalize("NFKC");
  if ((nfkc.match(PATH_SIGNIFICANT)?.length ?? 0) !== (name.match(PATH_SIGNIFICANT)?.length ?? 0))
    throw refuse("path_traversal", "Unicode look-alike of a dot or path separator in entry name", name);
  const segments = name.split("/").filter((s) => s !== "" && s !== ".");
  if (segments.includes("..")) throw refuse("path_traversal", `.. in entry name ${JSON.stringify(name)}`, name);
  if (segments.length > limits.maxDepth)
    throw refuse("too_deep", `entry nested ${segments.length} levels deep (max ${limits.maxDepth})`, name);
  for (const s of segments)
    if (byteLength(s) > MAX_SEGMENT_BYTES)
      throw refuse("name_too_long", `path segment longer than ${MAX_SEGMENT_BYTES} bytes`, name);
  return segments;
}

/** Checks the header mode and returns the normalised one (0o755 if any execute bit, else 0o644; dirs 0o755). */
function checkMode(raw: number | undefined, kind: "file" | "dir", name: string): number {
  if (raw === undefined || !Number.isSafeInteger(raw) || raw < 0)
    throw refuse("corrupt_header", "unreadable mode in entry header", name);
  const typeBits = raw & ~0o7777;
  // Some archivers put the st_mode file-type bits into the field; anything else beyond permissions is garbage.
  if (typeBits !== 0 && typeBits !== 0o100000 && typeBits !== 0o040000)
    throw refuse("bad_mode", `odd mode ${raw.toString(8)}`, name);
  const perm = raw & 0o7777;
  if (perm & 0o7000) throw refuse("bad_mode", `setuid/setgid/sticky mode ${perm.toString(8)}`, name);
  if (perm & 0o002) throw refuse("bad_mode", `world-writable mode ${perm.toString(8)}`, name);
  if (!(perm & 0o400)) throw refuse("bad_mode", `mode ${perm.toString(8)} is not readable by its owner`, name);
  return kind === "dir" || perm & 0o111 ? 0o755 : 0o644;
}

/** Duplicate / case / Unicode-normalisation collision tracking over explicit entries and implied parent dirs. */
class NameTable {
  private readonly nodes = new Map<string, { path: string; kind: "file" | "dir"; explicit: boolean }>();

  private static fold(p: string): string {
    return p.normalize("NFKC").toLowerCase();
  }

  add(segments: string[], kind: "file" | "dir", name: string): void {
    for (let i = 1; i <= segments.length; i++) {
      const isSelf = i === segments.length;
      const path = segments.slice(0, i).join("/");
      const k = isSelf ? kind : "dir";
      const key = NameTable.fold(path);
      const existing = this.nodes.get(key);
      if (!existing) {
        this.nodes.set(key, { path, kind: k, explicit: isSelf });
        continue;
      }
      if (existing.path !== path)
        throw refuse(
          "case_collision",
          `${JSON.stringify(path)} collides with ${JSON.stringify(existing.path)} (case or Unicode normalisation)`,
          name,
        );
      if (existing.kind !== k)
        throw refuse("duplicate_entry", `${JSON.stringify(path)} is both a file and a dir`, name);
      if (isSelf) {
        if (existing.explicit) throw refuse("duplicate_entry", `duplicate entry ${JSON.stringify(path)}`, name);
        existing.explicit = true;
      }
    }
  }
}

function mapTarError(err: Error & { tarCode?: string; code?: string }, entries: number, zeroStart: boolean) {
  const code = err.tarCode ?? err.code;
  if (code === "TAR_BAD_ARCHIVE") {
    if (/truncated/i.test(err.message)) return new PackageError("truncated", `archive is truncated: ${err.message}`);
    // No entry and a null first block: only end-of-archive blocks (a corrupt header after them errs earlier).
    if (entries === 0 && zeroStart) return new PackageError("empty", "archive has no entries");
  }
  return new PackageError("corrupt_header", `corrupt tar archive: ${err.message}`);
}

const ZEROS = Buffer.alloc(64 * 1024);

/** True when every byte of `b` is zero (compared natively, 64 KiB at a time). */
function allZero(b: Buffer): boolean {
  for (let off = 0; off < b.length; off += ZEROS.length) {
    const part = b.subarray(off, off + ZEROS.length);
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}

/**
 * Reads one of node-tar's Parser fields that have no public accessor: what follows the end-of-archive blocks (the
 * parser keeps it in its input buffer and never looks at it) and the pax global header state. Found by their symbol
 * descriptions; a node-tar without them makes every scan throw (caught by the tests at once), never skips the check.
 */
function parserField(parser: Parser, description: string): () => unknown {
  const sym = Object.getOwnPropertySymbols(parser).find((s) => s.description === description);
  if (!sym) throw new Error(`node-tar's Parser has no "${description}" field any more: update scan.ts`);
  return () => (parser as unknown as Record<symbol, unknown>)[sym];
}

/** A pax global header (`g`) that sets path/linkpath: node-tar ignores them, other tools apply them to every entry. */
function globalPathOf(gex: unknown): string | undefined {
  const g = gex as { path?: unknown; linkpath?: unknown } | undefined | null;
  if (g?.path != null) return "path";
  if (g?.linkpath != null) return "linkpath";
  return undefined;
}

function mapZlibError(err: Error & { code?: string }): PackageError {
  if (err.code === "Z_BUF_ERROR" || /unexpected end/i.test(err.message))
    return new PackageError("truncated", "gzip stream is truncated");
  return new PackageError("not_gzip", `invalid gzip data: ${err.message}`);
}

/**
 * Streams the archive through gunzip and node-tar's strict Parser, validating every header before its entry is
 * handed to `sink`. Rejects with the first PackageError; resolves once the whole archive was read.
 */
export async function scanArchive(archivePath: string, limits: ExtractLimits, sink: EntrySink): Promise<ScanStats> {
  const fh = await open(archivePath, "r");
  let fileSize: number;
  let headerLength: number;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new PackageError("not_gzip", "package is not a regular file");
    if (st.size === 0) throw new PackageError("empty", "package file is empty");
    fileSize = st.size;
    const head = Buffer.alloc(Math.min(fileSize, MAX_GZIP_HEADER));
    await fh.read(head, 0, head.length, 0);
    headerLength = gzipHeaderLength(head, fileSize);
  } catch (err) {
    await fh.close();
    throw err;
  }

  const stats: ScanStats = { entries: 0, files: 0, bytes: 0, compressedBytes: 0, decompressedBytes: 0 };
  const maxDecompressed = limits.maxTotalBytes + limits.maxEntries * PER_ENTRY_OVERHEAD + MiB;
  const names = new NameTable();
  const accepted = new WeakMap<ReadEntry, AcceptedEntry>();
  let declaredTotal = 0;
  let zeroStart = true;
  let sawEof = false;
  /** CRC-32 of the decompressed bytes, checked against the gzip trailer. */
  let crc = 0;

  return new Promise<ScanStats>((resolvePromise, rejectPromise) => {
    let settled = false;
    let failure: Error | undefined;
    // The deflate data after the gzip header: InflateRaw stops at its end (see gzip-member.ts).
    const source = createReadStream(archivePath, { start: headerLength, highWaterMark: 16 * 1024 });
    const gunzip = createInflateRaw();

    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      source.destroy();
      gunzip.destroy();
      void fh.close().catch(() => {});
      if (err) {
        sink.abort();
        rejectPromise(err);
      } else resolvePromise(stats);
    };
    const fail = (err: Error) => {
      if (failure || settled) return;
      failure = err;
      // abort() makes the parser ignore further input and emit "error" (handled below, which settles).
      parser.abort(err);
      settle(err);
    };

    const filter = (_path: string, entry: ReadEntry | Stats): boolean => {
      if (failure) return false;
      try {
        accepted.set(entry as ReadEntry, checkEntry(entry as ReadEntry));
        return true;
      } catch (err) {
        fail(err as Error);
        return false;
      }
    };

    const checkEntry = (entry: ReadEntry): AcceptedEntry => {
      const name = entry.path;
      if (++stats.entries > limits.maxEntries)
        throw refuse("too_many_entries", `more than ${limits.maxEntries} entries`, name);
      const globalKey = globalPathOf(entry.globalExtended);
      if (globalKey) throw refuse("pax_global_path", `pax global header sets ${globalKey} for every entry`, name);
      const segments = checkEntryName(name, limits);
      const type = entry.type;
      if (LINK_TYPES.has(type))
        throw new PackageError("link_entry", `${type} entries are not allowed: ${name} -> ${entry.linkpath}`, {
          entry: name,
          linkpath: entry.linkpath,
        });
      const kind = FILE_TYPES.has(type) ? "file" : type === "Directory" ? "dir" : undefined;
      if (!kind) throw refuse("special_file", `${type} entries are not allowed`, name);
      if (segments.length === 0) {
        if (kind === "dir") return { kind, rel: "", segments, mode: 0o755, size: 0 };
        throw refuse("path_traversal", "file entry names the package root", name);
      }
      const mode = checkMode(entry.header.mode, kind, name);
      const size = entry.header.size;
      if (size === undefined || !Number.isSafeInteger(size) || size < 0)
        throw refuse("corrupt_header", "negative or unreadable size in entry header", name);
      if (kind === "file") {
        if (size > limits.maxFileBytes)
          throw refuse("file_too_large", `entry of ${size} bytes exceeds ${limits.maxFileBytes}`, name);
        declaredTotal += size;
        if (declaredTotal > limits.maxTotalBytes)
          throw refuse("total_too_large", `files exceed ${limits.maxTotalBytes} bytes in total`, name);
      }
      names.add(segments, kind, name);
      const mtime = entry.header.mtime;
      return {
        kind,
        rel: segments.join("/"),
        segments,
        mode,
        size,
        mtime: mtime && !Number.isNaN(+mtime) ? mtime : undefined,
      };
    };

    const parser = new Parser({
      strict: true,
      maxMetaEntrySize: MAX_META_BYTES,
      filter,
      onReadEntry: (entry: ReadEntry) => {
        const e = accepted.get(entry);
        if (!e || failure) {
          entry.resume();
          return;
        }
        try {
          if (e.kind === "dir") {
            if (e.segments.length > 0) sink.dir(e);
            entry.resume();
            return;
          }
          const writer = sink.file(e);
          stats.files++;
          entry.on("data", (chunk: Buffer) => {
            if (failure) return;
            try {
              stats.bytes += chunk.length;
              writer.write(chunk);
            } catch (err) {
              fail(err as Error);
            }
          });
          entry.on("end", () => {
            if (failure) return;
            try {
              writer.close();
            } catch (err) {
              fail(err as Error);
            }
          });
        } catch (err) {
          fail(err as Error);
          entry.resume();
        }
      },
    });
    parser.on("ignoredEntry", (entry: ReadEntry) => {
      if (failure || accepted.has(entry)) return;
      // Not refused by our filter: an oversized pax/long-name record or a type node-tar does not know.
      if (entry.meta) fail(refuse("corrupt_header", `extended header record over ${MAX_META_BYTES} bytes`, entry.path));
      else fail(refuse("special_file", `unsupported entry type ${entry.header.type ?? "?"}`, entry.path));
    });
    let metaRecords = 0;
    parser.on("meta", (record: string) => {
      // A real entry carries at most a pax header and GNU long name + long link records; more is a record flood.
      if (++metaRecords > 3 * limits.maxEntries + 16)
        return fail(
          new PackageError("too_many_entries", `more than ${3 * limits.maxEntries + 16} extended header records`),
        );
      // node-tar cuts pax / GNU long-name values at the first NUL; other tools may not. Refuse the ambiguity.
      if (/\0[^\0]/.test(record)) fail(new PackageError("corrupt_header", "NUL byte inside an extended name record"));
    });
    const leftover = parserField(parser, "buffer");
    const globalHeader = parserField(parser, "globalExtendedHeader");
    const dataAfterEof = () =>
      new PackageError(
        "data_after_eof",
        "non-zero data after the tar end-of-archive blocks (another archive there is read by some tools)",
      );
    /** Once the end-of-archive blocks are seen, what the parser buffered after them must be zeros. */
    const checkLeftover = () => {
      const rest = leftover() as Buffer | undefined;
      if (rest && !allZero(rest)) fail(dataAfterEof());
    };
    parser.on("eof", () => {
      sawEof = true;
    });
    parser.on("error", (err: Error) => settle(failure ?? mapTarError(err, stats.entries, zeroStart)));
    parser.on("end", () => {
      if (failure) return;
      if (sawEof) checkLeftover();
      const globalKey = globalPathOf(globalHeader());
      if (globalKey)
        fail(new PackageError("pax_global_path", `pax global header sets ${globalKey} (after the last entry)`));
      if (failure) return;
      if (stats.entries === 0) settle(new PackageError("empty", "archive has no entries"));
      else settle();
    });
    parser.on("drain", () => gunzip.resume());

    source.on("data", (chunk: Buffer | string) => {
      stats.compressedBytes += chunk.length;
    });
    source.on("error", (err) => fail(err));
    gunzip.on("error", (err) => fail(mapZlibError(err)));
    gunzip.on("data", (chunk: Buffer) => {
      if (settled) return;
      if (stats.decompressedBytes === 0) {
        // node-tar would transparently decompress a nested gzip/zstd stream, bypassing our byte accounting.
        if ((chunk[0] === 0x1f && chunk[1] === 0x8b) || (chunk[0] === 0x28 && chunk[1] === 0xb5 && chunk[2] === 0x2f))
          return fail(new PackageError("corrupt_header", "nested compressed stream inside the gzip"));
      }
      if (stats.decompressedBytes < 512 && chunk.subarray(0, 512 - stats.decompressedBytes).some((b) => b !== 0))
        zeroStart = false;
      stats.decompressedBytes += chunk.length;
      crc = crc32(chunk, crc);
      if (stats.decompressedBytes > maxDecompressed)
        return fail(
          new PackageError("total_too_large", `archive decompresses to more than ${maxDecompressed} bytes`, {
            decompressedBytes: stats.decompressedBytes,
          }),
        );
      const ratio = stats.decompressedBytes / Math.max(1, stats.compressedBytes);
      if (stats.decompressedBytes > RATIO_GRACE_BYTES && ratio > limits.maxCompressionRatio)
        return fail(
          new PackageError(
            "compression_ratio",
            `compression ratio ${ratio.toFixed(0)} exceeds ${limits.maxCompressionRatio} (gzip bomb?)`,
            { compressedBytes: stats.compressedBytes, decompressedBytes: stats.decompressedBytes },
          ),
        );
      // After the end-of-archive blocks only zero padding may follow; it is checked here, not parsed.
      if (sawEof) {
        if (!allZero(chunk)) fail(dataAfterEof());
        return;
      }
      if (!parser.write(chunk)) gunzip.pause();
      if (sawEof) checkLeftover();
    });
    gunzip.on("end", () => {
      if (settled) return;
      // bytesWritten: the compressed bytes the deflate stream took; the trailer follows, then the file must end.
      checkGzipTrailer(fh, fileSize, headerLength + gunzip.bytesWritten, crc, stats.decompressedBytes).then(
        () => {
          if (!settled) parser.end();
        },
        (err: Error) => fail(err),
      );
    });
    source.pipe(gunzip);
  });
}

/** Writes accepted entries under `root` (the staging dir), never following or creating links. */
export function diskSink(root: string): EntrySink & { digests: Record<string, string> } {
  const createdDirs = new Set<string>([""]);
  // SHA-256 of every file as written, so the digest check needs no second read of the extracted tree.
  const digests: Record<string, string> = {};
  let openFd: number | undefined;

  const within = (segments: string[]): string => {
    const abs = resolve(root, ...segments);
    // Defence in depth: the name checks already refuse anything that could resolve outside.
    if (!abs.startsWith(root + sep)) throw refuse("path_traversal", "entry resolves outside the package dir");
    return abs;
  };
  const ensureDirs = (segments: string[]) => {
    for (let i = 1; i <= segments.length; i++) {
      const rel = segments.slice(0, i).join("/");
      if (createdDirs.has(rel)) continue;
      const abs = within(segments.slice(0, i));
      mkdirSync(abs, { mode: 0o755 });
      chmodSync(abs, 0o755); // independent of the daemon's umask: container plugins read as another uid
      createdDirs.add(rel);
    }
  };

  return {
    digests,
    dir(e) {
      ensureDirs(e.segments);
    },
    file(e) {
      ensureDirs(e.segments.slice(0, -1));
      const abs = within(e.segments);
      // O_EXCL + O_NOFOLLOW: never overwrite, never write through a link (none can exist, but be explicit).
      const fd = openSync(abs, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      openFd = fd;
      let written = 0;
      const hash = createHash("sha256");
      return {
        write(chunk) {
          written += chunk.length;
          if (written > e.size) throw refuse("corrupt_header", "entry data longer than its declared size", e.rel);
          hash.update(chunk);
          let off = 0;
          while (off < chunk.length) off += writeSync(fd, chunk, off, chunk.length - off);
        },
        close() {
          openFd = undefined;
          digests[e.rel] = hash.digest("hex");
          try {
            fchmodSync(fd, e.mode);
            if (e.mtime) futimesSync(fd, e.mtime, e.mtime);
          } finally {
            closeSync(fd);
          }
        },
      };
    },
    abort() {
      if (openFd !== undefined) closeSync(openFd);
      openFd = undefined;
    },
  };
}

/** Collects manifest.json in memory, discards everything else. */
export function manifestSink(): EntrySink & { manifest(): Buffer | undefined } {
  let chunks: Buffer[] | undefined;
  return {
    dir() {},
    file(e) {
      if (e.rel !== "manifest.json") return { write() {}, close() {} };
      if (e.size > MAX_MANIFEST_BYTES)
        throw new PackageError("invalid_manifest", `manifest.json is larger than ${MAX_MANIFEST_BYTES} bytes`, [
          { field: "/", message: "too large" },
        ]);
      chunks = [];
      return {
        write(chunk) {
          chunks!.push(Buffer.from(chunk));
        },
        close() {},
      };
    },
    abort() {},
    manifest: () => (chunks ? Buffer.concat(chunks) : undefined),
  };
}
