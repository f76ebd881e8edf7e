/**
 * Exactly one gzip member (RFC 1952), nothing after it.
 *
 * Node's Gunzip decompresses every member of a multi-member file, one after the other, and skips zero padding
 * after the last; other readers stop after the first member. A package whose second member carries another tar would
 * list different files in different tools, so the package reader takes the gzip framing in its own hands: it parses
 * the header here, inflates the raw deflate stream with zlib's InflateRaw (which stops at the end of the stream and
 * reports how many compressed bytes it consumed), then checks the 8-byte trailer (CRC-32 and size of the
 * decompressed data) and that the file ends right there. zlib has no "first member only" mode, hence this file.
 */
import type { FileHandle } from "node:fs/promises";
import { crc32 } from "node:zlib";
import { PackageError } from "./errors.js";

/** Longest gzip header accepted (file name, comment and extra field included). */
export const MAX_GZIP_HEADER = 64 * 1024;

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;
const FRESERVED = 0xe0;

const notGzip = (why: string) => new PackageError("not_gzip", `invalid gzip header: ${why}`);

/** Length of the gzip header at the start of `head` (the first bytes of the file, up to MAX_GZIP_HEADER). */
export function gzipHeaderLength(head: Buffer, fileSize: number): number {
  if (head.length < 2 || head[0] !== 0x1f || head[1] !== 0x8b)
    throw new PackageError("not_gzip", "package is not a gzip file (.tar.gz expected)");
  const need = (n: number) => {
    if (n <= head.length) return;
    if (head.length < fileSize) throw notGzip(`header longer than ${MAX_GZIP_HEADER} bytes`);
    throw new PackageError("truncated", "gzip stream is truncated (in its header)");
  };
  need(10);
  if (head[2] !== 8) throw notGzip(`compression method ${head[2]} (8, deflate, expected)`);
  const flags = head[3]!;
  if (flags & FRESERVED) throw notGzip("reserved flag bits set");
  let p = 10;
  if (flags & FEXTRA) {
    need(p + 2);
    p += 2 + head.readUInt16LE(p);
    need(p);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const end = head.indexOf(0, p);
    if (end < 0) need(head.length + 1);
    p = end + 1;
  }
  if (flags & FHCRC) {
    need(p + 2);
    if ((crc32(head.subarray(0, p)) & 0xffff) !== head.readUInt16LE(p)) throw notGzip("header CRC mismatch");
    p += 2;
  }
  return p;
}

/**
 * After the deflate stream ended at `trailerAt`: the trailer must hold the CRC-32 and size (mod 2^32) of what was
 * decompressed, and the file must end with it.
 */
export async function checkGzipTrailer(
  fh: FileHandle,
  fileSize: number,
  trailerAt: number,
  crc: number,
  size: number,
): Promise<void> {
  if (fileSize < trailerAt + 8) throw new PackageError("truncated", "gzip stream is truncated (in its trailer)");
  const trailer = Buffer.alloc(8);
  await fh.read(trailer, 0, 8, trailerAt);
  if (trailer.readUInt32LE(0) !== crc >>> 0) throw new PackageError("not_gzip", "gzip CRC-32 mismatch");
  if (trailer.readUInt32LE(4) !== size % 2 ** 32) throw new PackageError("not_gzip", "gzip size mismatch");
  if (fileSize > trailerAt + 8) {
    const next = Buffer.alloc(2);
    await fh.read(next, 0, 2, trailerAt + 8);
    const member = next[0] === 0x1f && next[1] === 0x8b;
    throw new PackageError(
      "extra_gzip_member",
      `${fileSize - trailerAt - 8} bytes after the first gzip member (${member ? "a further gzip member" : "padding or garbage"}); a package is exactly one member`,
      { offset: trailerAt + 8 },
    );
  }
}
