/**
 * Mutational fuzz test of the package reader (issue 11 point 9). Valid packages (hand-forged tars, a node-tar pack
 * with pax long names) are mutated at the tar level (bit flips, truncation, 512-byte block splicing, header field
 * edits with or without a fixed checksum, data appended after the end) and at the gzip level (bit flips, truncation,
 * a further member, padding, header flags, trailer), then installed with extractPackage into a home with a canary
 * tree. Property: every outcome is either a success whose files all lie in the target dir, or a PackageError with a
 * code; never another exception, never a hang, never a byte written or changed outside the target.
 *
 * Bounded: HECATE_FUZZ_MS (default 10 s) and HECATE_FUZZ_CASES (default 5000). The seed is random unless
 * HECATE_FUZZ_SEED is set; every failure names the seed and the case number: HECATE_FUZZ_SEED=<seed>
 * HECATE_FUZZ_CASE=<n> replays exactly that case.
 */
import assert from "node:assert/strict";
import { randomInt } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { extractPackage, PackageError, packPlugin } from "../src/index.js";
import {
  gz,
  manifestJson,
  pax,
  type RawEntry,
  removeDir,
  snapshot,
  tarOf,
  tempDir,
  validEntries,
  writeTree,
} from "../src/testing/forge.js";

const SEED = Number(process.env.HECATE_FUZZ_SEED ?? randomInt(2 ** 31));
const ONLY_CASE = process.env.HECATE_FUZZ_CASE === undefined ? undefined : Number(process.env.HECATE_FUZZ_CASE);
const BUDGET_MS = Number(process.env.HECATE_FUZZ_MS ?? 10_000);
const MAX_CASES = Number(process.env.HECATE_FUZZ_CASES ?? 5000);
/** One case taking longer than this is a hang. */
const CASE_DEADLINE_MS = 15_000;

/**
 * mulberry32: a 32-bit seeded PRNG in five lines. Written here because the test needs replayable streams from one
 * integer seed, and Math.random cannot be seeded.
 */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

interface Rng {
  int(n: number): number;
  chance(p: number): boolean;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Buffer;
}

function rngOf(seed: number): Rng {
  const next = prng(seed);
  const int = (n: number) => Math.floor(next() * n);
  return {
    int,
    chance: (p) => next() < p,
    pick: (xs) => xs[int(xs.length)]!,
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => int(256))),
  };
}

const blocks = (n: number) => Math.ceil(n / 512) * 512;

/** Offsets of the headers of a (possibly mutated) tar, following octal size fields; stops at garbage. */
function headerOffsets(tar: Buffer): number[] {
  const out: number[] = [];
  let off = 0;
  while (off + 512 <= tar.length && out.length < 10_000) {
    const block = tar.subarray(off, off + 512);
    if (block.every((b) => b === 0)) break;
    out.push(off);
    const size = Number.parseInt(block.subarray(124, 136).toString("latin1").replace(/\0.*$/s, "").trim(), 8);
    if (!Number.isSafeInteger(size) || size < 0) break;
    off += 512 + blocks(size);
  }
  return out;
}

function fixChecksum(tar: Buffer, off: number): void {
  const h = tar.subarray(off, off + 512);
  if (h.length < 512) return;
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
}

const FIELDS: [name: string, off: number, len: number][] = [
  ["name", 0, 100],
  ["mode", 100, 8],
  ["uid", 108, 8],
  ["size", 124, 12],
  ["mtime", 136, 12],
  ["typeflag", 156, 1],
  ["linkname", 157, 100],
  ["magic", 257, 8],
  ["prefix", 345, 155],
];

function fieldValue(rng: Rng, field: string, len: number): Buffer {
  const text = (s: string) => Buffer.from(s, "utf8");
  const octal = (n: number) => text(`${n.toString(8).padStart(len - 1, "0")}\0`);
  switch (rng.int(4)) {
    case 0:
      return rng.bytes(rng.int(len) + 1);
    case 1:
      return octal(rng.pick([0, 1, 0o777, 0o4755, 0o1777, 511, 512, 513, 1e6, 2 ** 33 - 1]) % 8 ** (len - 1));
    case 2: {
      const b = Buffer.alloc(Math.min(len, 12));
      b[0] = rng.pick([0x80, 0xff]); // base-256
      for (let i = 1; i < b.length; i++) b[i] = rng.int(256);
      return b;
    }
    default:
      if (field === "typeflag")
        return text(rng.pick(["0", "1", "2", "3", "5", "6", "7", "x", "g", "L", "K", "Z", "\0"]));
      return text(
        rng.pick([
          "../x",
          "/etc/passwd",
          "dist/index.js",
          "manifest.json",
          "a/../../b",
          "C:\\x",
          "%2e%2e/x",
          "\uff0e/x",
        ]),
      );
  }
}

type Mutation = (rng: Rng, b: Buffer, bases: Buffer[]) => { out: Buffer; what: string };

const tarMutations: Mutation[] = [
  (rng, b) => {
    const out = Buffer.from(b);
    const n = 1 + rng.int(8);
    for (let i = 0; i < n; i++) out[rng.int(out.length)]! ^= 1 << rng.int(8);
    return { out, what: `flip ${n} bits` };
  },
  (rng, b) => {
    const at = rng.int(b.length);
    return { out: b.subarray(0, at), what: `truncate tar at ${at}` };
  },
  (rng, b, bases) => {
    const from = rng.pick(bases);
    const src = 512 * rng.int(Math.max(1, from.length / 512));
    const dst = 512 * rng.int(Math.max(1, b.length / 512));
    const block = from.subarray(src, src + 512);
    const mode = rng.pick(["replace", "insert", "delete"] as const);
    const out =
      mode === "replace"
        ? Buffer.concat([b.subarray(0, dst), block, b.subarray(dst + 512)])
        : mode === "insert"
          ? Buffer.concat([b.subarray(0, dst), block, b.subarray(dst)])
          : Buffer.concat([b.subarray(0, dst), b.subarray(dst + 512)]);
    return { out, what: `${mode} block ${src / 512} at block ${dst / 512}` };
  },
  (rng, b) => {
    const out = Buffer.from(b);
    const heads = headerOffsets(out);
    if (heads.length === 0) return { out, what: "no header to edit" };
    const h = rng.pick(heads);
    const [field, off, len] = rng.pick(FIELDS);
    const value = fieldValue(rng, field, len);
    out.fill(0, h + off, h + off + len);
    value.copy(out, h + off, 0, Math.min(len, value.length));
    const fixed = rng.chance(0.8);
    if (fixed) fixChecksum(out, h);
    return {
      out,
      what: `header@${h} ${field}=${JSON.stringify(value.toString("latin1"))}${fixed ? " (checksum fixed)" : ""}`,
    };
  },
  (rng, b, bases) => {
    const extra = rng.pick([rng.pick(bases), Buffer.from("x"), rng.bytes(1 + rng.int(700))]);
    return {
      out: Buffer.concat([b, Buffer.alloc(512 * rng.int(3)), extra]),
      what: `append ${extra.length} bytes after the end`,
    };
  },
];

const gzipMutations: Mutation[] = [
  (rng, b) => {
    const out = Buffer.from(b);
    const n = 1 + rng.int(4);
    for (let i = 0; i < n; i++) out[rng.int(out.length)]! ^= 1 << rng.int(8);
    return { out, what: `flip ${n} gzip bits` };
  },
  (rng, b) => {
    const at = rng.int(b.length);
    return { out: b.subarray(0, at), what: `truncate gzip at ${at}` };
  },
  (rng, b, bases) => {
    const tail = rng.pick([
      gz(rng.pick(bases)),
      gz(Buffer.alloc(0)),
      Buffer.alloc(1 + rng.int(600)),
      rng.bytes(1 + rng.int(64)),
    ]);
    return { out: Buffer.concat([b, tail]), what: `append ${tail.length} bytes after the member` };
  },
  (rng, b) => {
    const out = Buffer.from(b);
    out[3] = rng.int(256);
    return { out, what: `gzip flags ${out[3]}` };
  },
  (rng, b) => {
    const out = Buffer.from(b);
    out[out.length - 1 - rng.int(8)] ^= 1 << rng.int(8);
    return { out, what: "gzip trailer bit" };
  },
];

/** The valid starting points: forged tars (raw bytes) and one packed by node-tar (pax long names, dirs). */
async function baseTars(home: string): Promise<Buffer[]> {
  const longName = `priv/static/${"deep-name-".repeat(12)}.css`;
  const forged: RawEntry[][] = [
    validEntries("victim"),
    validEntries("victim", { "priv/static/app.css": "body{}\n", "dist/lib/util.js": "export const x = 1;\n" }),
    [
      { name: "dist/", type: "5", mode: 0o755 },
      pax({ path: longName }),
      { name: "placeholder", data: "a{}\n" },
      ...validEntries("victim", { [longName]: "a{}\n" }).filter((e) => e.name !== longName),
    ],
  ];
  const src = join(home, "src");
  writeTree(src, {
    "manifest.json": manifestJson("victim"),
    "dist/index.js": "export default {};\n",
    [longName]: "a{}\n",
  });
  const packed = join(home, "packed.tar.gz");
  await packPlugin(src, packed);
  return [...forged.map((e) => tarOf(e)), gunzipSync(readFileSync(packed))];
}

function caseSeed(i: number): number {
  return (Math.imul(SEED ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i + 1, 0xc2b2ae35)) | 0;
}

function mutate(i: number, bases: Buffer[]): { archive: Buffer; steps: string[] } {
  const rng = rngOf(caseSeed(i));
  let tar = rng.pick(bases);
  const steps: string[] = [];
  const tarSteps = rng.int(3);
  for (let k = 0; k < tarSteps; k++) {
    const { out, what } = rng.pick(tarMutations)(rng, tar, bases);
    tar = out;
    steps.push(what);
  }
  if (rng.chance(0.3)) {
    for (const h of headerOffsets(tar)) fixChecksum(tar, h);
    steps.push("checksums fixed");
  }
  let archive = gz(tar, rng.pick([1, 6, 9]));
  const gzSteps = tarSteps === 0 ? 1 : rng.int(2);
  for (let k = 0; k < gzSteps; k++) {
    const { out, what } = rng.pick(gzipMutations)(rng, archive, bases);
    archive = out;
    steps.push(what);
  }
  return { archive, steps };
}

test(`fuzz: mutated packages are installed or refused with a PackageError, nothing else (seed ${SEED})`, async (t) => {
  const home = tempDir("hecate-fuzz-");
  const plugins = join(home, "plugins");
  const target = join(plugins, "victim", "package");
  const archivePath = join(home, "victim.tar.gz");
  const outcomes = new Map<string, number>();
  let cases = 0;
  try {
    const bases = await baseTars(home);
    writeTree(plugins, {
      "victim/data/keep.txt": "plugin data\n",
      "other/package/dist/index.js": "// sibling plugin\n",
      "canary.txt": "canary\n",
    });
    const before = snapshot(home);
    const t0 = Date.now();
    const first = ONLY_CASE ?? 0;
    const last = ONLY_CASE ?? MAX_CASES - 1;
    for (let i = first; i <= last && (ONLY_CASE !== undefined || Date.now() - t0 < BUDGET_MS); i++) {
      const { archive, steps } = mutate(i, bases);
      const where = `seed ${SEED} case ${i} (replay: HECATE_FUZZ_SEED=${SEED} HECATE_FUZZ_CASE=${i}): ${steps.join("; ")}`;
      writeFileSync(archivePath, archive);
      let timer: NodeJS.Timeout | undefined;
      const hang = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`hang: no outcome within ${CASE_DEADLINE_MS} ms`)), CASE_DEADLINE_MS);
      });
      let outcome: string;
      try {
        await Promise.race([
          extractPackage(archivePath, target, { expectedName: "victim", timeoutMs: CASE_DEADLINE_MS - 2000 }),
          hang,
        ]);
        outcome = "installed";
        // everything extracted is a plain file or dir inside the target (snapshot follows no link)
        for (const [rel, kind] of Object.entries(snapshot(target)))
          assert.match(kind, /^(file|dir) /, `${where}: ${rel} is ${kind}`);
      } catch (err) {
        if (!(err instanceof PackageError) || typeof err.code !== "string" || err.code.length === 0)
          assert.fail(`${where}: not a PackageError: ${(err as Error)?.stack ?? String(err)}`);
        outcome = err.code;
      } finally {
        clearTimeout(timer);
      }
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      rmSync(target, { recursive: true, force: true });
      rmSync(archivePath, { force: true });
      // nothing created, changed or left anywhere else (no escape, no staging dir, canaries intact)
      assert.deepEqual(snapshot(home), before, where);
      cases++;
    }
    assert.ok(!existsSync(target));
    const summary = [...outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${k} ${n}`);
    t.diagnostic(`seed ${SEED}: ${cases} cases in ${Date.now() - t0} ms: ${summary.join(", ")}`);
    assert.ok(cases >= (ONLY_CASE === undefined ? 50 : 1), `only ${cases} cases ran`);
  } catch (err) {
    console.error(`fuzz failed with seed ${SEED} after ${cases} cases`);
    throw err;
  } finally {
    removeDir(home);
  }
});
