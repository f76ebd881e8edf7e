/**
 * Test helpers: raw tar writing (checksum-correct ustar headers with arbitrary names, types, modes, sizes, uid/gid,
 * which node-tar refuses to produce), package dirs, and canary-tree snapshots.
 */
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, deflateRawSync, gzipSync } from "node:zlib";

export interface RawEntry {
  /** Entry name; a Buffer is written byte for byte (broken UTF-8, NUL, ...). */
  name: string | Buffer;
  /** Type flag character: "0" file, "1" hardlink, "2" symlink, "3" char dev, "4" block dev, "5" dir, "6" fifo, "x" pax, "L" GNU long name. */
  type?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  data?: Buffer | string;
  /** Size written in the header (default: data length). */
  size?: number;
  /** Raw 12-byte size field (base-256 negative/huge values, garbage). */
  sizeField?: Buffer;
  linkname?: string;
  prefix?: string;
  mtime?: number;
  /** Corrupt the checksum. */
  badChecksum?: boolean;
}

function put(buf: Buffer, off: number, len: number, value: string | Buffer) {
  const b = typeof value === "string" ? Buffer.from(value, "utf8") : value;
  b.copy(buf, off, 0, Math.min(len, b.length));
}

function octal(n: number, len: number): string {
  return `${n.toString(8).padStart(len - 1, "0")}\0`;
}

export function header(e: RawEntry): Buffer {
  const h = Buffer.alloc(512);
  writeHeader(h, e);
  return h;
}

/** Writes the 512-byte header of `e` into `h` (a zeroed 512-byte view). */
function writeHeader(h: Buffer, e: RawEntry): void {
  const dataLength = e.data === undefined ? 0 : Buffer.byteLength(e.data);
  put(h, 0, 100, e.name);
  put(h, 100, 8, octal(e.mode ?? 0o644, 8));
  put(h, 108, 8, octal(e.uid ?? 1000, 8));
  put(h, 116, 8, octal(e.gid ?? 1000, 8));
  if (e.sizeField) put(h, 124, 12, e.sizeField);
  else put(h, 124, 12, octal(e.size ?? dataLength, 12));
  put(h, 136, 12, octal(e.mtime ?? 1_700_000_000, 12));
  h[156] = (e.type ?? "0").charCodeAt(0);
  if (e.linkname) put(h, 157, 100, e.linkname);
  put(h, 257, 8, "ustar\u000000");
  put(h, 265, 32, e.uname ?? "dev");
  put(h, 297, 32, e.gname ?? "dev");
  if (e.prefix) put(h, 345, 155, e.prefix);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += h[i]!;
  if (e.badChecksum) sum += 1;
  put(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
}

/** A pax extended header entry ("x") carrying `records` for the next entry. */
export function pax(records: Record<string, string | Buffer>): RawEntry {
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(records)) {
    const body = Buffer.concat([Buffer.from(` ${k}=`), Buffer.from(v), Buffer.from("\n")]);
    let len = body.length + 1;
    while (String(len).length + body.length !== len) len = String(len).length + body.length;
    parts.push(Buffer.concat([Buffer.from(String(len)), body]));
  }
  return { name: "PaxHeader", type: "x", data: Buffer.concat(parts) };
}

/** Raw tar bytes: each entry's header and data (padded), then the two end-of-archive blocks unless `eof: false`. */
export function tarOf(entries: RawEntry[], opts: { eof?: boolean } = {}): Buffer {
  // One allocation for the whole archive: the 100,000-entry case would otherwise leave 200,000 small buffers behind.
  const blocks = (n: number) => Math.ceil(n / 512) * 512;
  let total = opts.eof === false ? 0 : 1024;
  for (const e of entries) total += 512 + (e.data === undefined ? 0 : blocks(Buffer.byteLength(e.data)));
  const out = Buffer.alloc(total);
  let off = 0;
  for (const e of entries) {
    writeHeader(out.subarray(off, off + 512), e);
    off += 512;
    if (e.data !== undefined) {
      const n = typeof e.data === "string" ? out.write(e.data, off, "utf8") : e.data.copy(out, off);
      off += blocks(n);
    }
  }
  return out;
}

export function gz(data: Buffer, level = 6): Buffer {
  return gzipSync(data, { level });
}

/**
 * One gzip member written by hand (RFC 1952), with the optional header fields zlib's gzip never writes: extra field,
 * file name, comment, header CRC.
 */
export function gzipMember(
  data: Buffer,
  opts: { extra?: Buffer; name?: string; comment?: string; headerCrc?: boolean; flags?: number } = {},
): Buffer {
  let flags = opts.flags ?? 0;
  const parts: Buffer[] = [];
  if (opts.extra) {
    flags |= 0x04;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(opts.extra.length);
    parts.push(len, opts.extra);
  }
  if (opts.name !== undefined) {
    flags |= 0x08;
    parts.push(Buffer.from(`${opts.name}\0`, "latin1"));
  }
  if (opts.comment !== undefined) {
    flags |= 0x10;
    parts.push(Buffer.from(`${opts.comment}\0`, "latin1"));
  }
  if (opts.headerCrc) flags |= 0x02;
  let header = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3]), ...parts]);
  if (opts.headerCrc) {
    const hcrc = Buffer.alloc(2);
    hcrc.writeUInt16LE(crc32(header) & 0xffff);
    header = Buffer.concat([header, hcrc]);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data));
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  return Buffer.concat([header, deflateRawSync(data), trailer]);
}

export const sha256 = (b: Buffer | string) => createHash("sha256").update(b).digest("hex");

export function manifestJson(name: string, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ name, version: "1.0.0", ...extra });
}

export const INDEX_JS = "export default { routes: () => [] };\n";

/** Entries of a complete valid package (manifest, code, digests) for `name`, plus `files`. */
export function validEntries(
  name: string,
  files: Record<string, string | Buffer> = {},
  opts: { manifest?: string; entry?: Partial<RawEntry> } = {},
): RawEntry[] {
  const all: Record<string, string | Buffer> = {
    "manifest.json": opts.manifest ?? manifestJson(name),
    "dist/index.js": INDEX_JS,
    ...files,
  };
  const digests: Record<string, string> = {};
  for (const k of Object.keys(all).sort()) digests[k] = sha256(Buffer.from(all[k]!));
  const fileManifest = `${JSON.stringify({ version: 1, algorithm: "sha256", files: digests }, null, 2)}\n`;
  return [
    ...Object.entries(all).map(([n, data]) => ({ name: n, data: Buffer.from(data), ...opts.entry })),
    { name: "hecate-files.json", data: fileManifest },
  ];
}

export function tempDir(prefix = "hecate-pkg-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeTree(root: string, files: Record<string, string | Buffer>): void {
  for (const [rel, data] of Object.entries(files)) {
    const abs = join(root, rel);
    mkdirSync(join(abs, ".."), { recursive: true });
    writeFileSync(abs, data);
  }
}

/** Every path under `root` with its type, mode and content digest: compared before/after to prove nothing changed. */
export function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (abs: string, rel: string) => {
    for (const name of readdirSync(abs).sort()) {
      const a = join(abs, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(a);
      if (st.isDirectory()) {
        out[r] = `dir ${st.mode.toString(8)}`;
        walk(a, r);
      } else if (st.isFile()) out[r] = `file ${st.mode.toString(8)} ${sha256(readFileSync(a))}`;
      else out[r] = `other ${st.mode.toString(8)}`;
    }
  };
  walk(root, "");
  return out;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
