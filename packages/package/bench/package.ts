/**
 * Package extraction bench, against baselines measured in the same run on the same archive:
 *  - extractPackage (pass 1 without writes, pass 2 with every entry check, digest verification, rename) vs
 *    node-tar's own `tar.x` (no checks, no digests) and GNU `tar -xzf`;
 *  - verifyPackageDir (what every load re-checks) and readArchiveManifest;
 *  - refusal time of a 100,000-entry archive and of a 256 MiB gzip bomb.
 * ratio* = baseline time / our time (1 = as fast as the baseline). Prints `BENCH_JSON {...}` last.
 *   node dist/bench/package.js      (BENCH_PKG_FILES, BENCH_PKG_RUNS)
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extract as tarExtract } from "tar";
import { extractPackage, packPlugin, readArchiveManifest, verifyPackageDir } from "../src/index.js";
import { gz, tarOf, validEntries } from "../src/testing/forge.js";

const FILES = Number(process.env.BENCH_PKG_FILES ?? 2000);
const RUNS = Number(process.env.BENCH_PKG_RUNS ?? 5);
const NO_TRUST = { requireSignature: false, trustedKeys: [] };

const WORDS =
  "const let function return export import await async value result plugin route handler request reply".split(" ");
function sourceText(bytes: number, seed: number): string {
  const out: string[] = [];
  let n = 0;
  let x = seed;
  while (n < bytes) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${WORDS[x % WORDS.length]}${x % 97} `;
    out.push(w);
    n += w.length;
  }
  return out.join("");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function timeIt(runs: number, fn: (i: number) => Promise<unknown> | unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn(i);
    times.push(performance.now() - t0);
  }
  return median(times);
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), "hecate-pkgbench-"));
  try {
    const src = join(work, "src");
    mkdirSync(join(src, "dist", "lib"), { recursive: true });
    mkdirSync(join(src, "priv", "static", "assets"), { recursive: true });
    writeFileSync(join(src, "manifest.json"), JSON.stringify({ name: "bench", version: "1.0.0" }));
    writeFileSync(join(src, "dist", "index.js"), "export default {};\n");
    for (let i = 0; i < FILES; i++) {
      const dir = i % 4 === 0 ? join(src, "priv", "static", "assets") : join(src, "dist", "lib");
      writeFileSync(join(dir, `m${i}.js`), sourceText(2048 + ((i * 7919) % 8192), i));
    }
    writeFileSync(join(src, "priv", "static", "blob.bin"), randomBytes(16 * 1024 * 1024));
    const archive = join(work, "bench.tar.gz");
    const packed = await packPlugin(src, archive);

    let n = 0;
    const fresh = () => join(work, "out", String(n++));
    const oursMs = await timeIt(RUNS, () => extractPackage(archive, join(fresh(), "package"), { trust: NO_TRUST }));
    const nodeTarMs = await timeIt(RUNS, () => {
      const cwd = fresh();
      mkdirSync(cwd, { recursive: true });
      return tarExtract({ file: archive, cwd });
    });
    const gnuTarMs = await timeIt(RUNS, () => {
      const cwd = fresh();
      mkdirSync(cwd, { recursive: true });
      const r = spawnSync("tar", ["-xzf", archive, "-C", cwd]);
      if (r.status !== 0) throw new Error(`tar failed: ${r.stderr}`);
    });
    const installed = join(work, "out", "0", "package");
    const verifyMs = await timeIt(RUNS, () => verifyPackageDir(installed, NO_TRUST));
    const readManifestMs = await timeIt(RUNS, () => readArchiveManifest(archive));
    rmSync(join(work, "out"), { recursive: true, force: true });

    const many = join(work, "many.tar.gz");
    writeFileSync(
      many,
      gz(tarOf(Array.from({ length: 100_000 }, (_, i) => ({ name: `f/${i.toString(36)}`, data: "" }))), 1),
    );
    const bomb = join(work, "bomb.tar.gz");
    writeFileSync(
      bomb,
      gz(tarOf([...validEntries("bench"), { name: "zeros.bin", data: Buffer.alloc(256 * 1024 * 1024) }]), 9),
    );
    const refuse = async (file: string) => {
      await extractPackage(file, join(fresh(), "package")).then(
        () => {
          throw new Error(`${file} was accepted`);
        },
        (err: { code?: string }) => err.code,
      );
    };
    const refuse100kMs = await timeIt(3, () => refuse(many));
    const refuseBombMs = await timeIt(3, () => refuse(bomb));

    const result = {
      bench: "package_extract",
      files: packed.files,
      archiveBytes: packed.bytes,
      oursMs: +oursMs.toFixed(1),
      nodeTarMs: +nodeTarMs.toFixed(1),
      gnuTarMs: +gnuTarMs.toFixed(1),
      ratioExtractVsNodeTar: +(nodeTarMs / oursMs).toFixed(2),
      ratioExtractVsGnuTar: +(gnuTarMs / oursMs).toFixed(2),
      verifyMs: +verifyMs.toFixed(1),
      readManifestMs: +readManifestMs.toFixed(1),
      refuse100kEntriesMs: +refuse100kMs.toFixed(1),
      refuseGzipBomb256MiBMs: +refuseBombMs.toFixed(1),
    };
    console.log(
      `extract ${packed.files} files (${(packed.bytes / 2 ** 20).toFixed(1)} MiB .tar.gz): hecate ${result.oursMs} ms, ` +
        `node-tar ${result.nodeTarMs} ms, GNU tar ${result.gnuTarMs} ms; verify ${result.verifyMs} ms; ` +
        `refuse 100k entries ${result.refuse100kEntriesMs} ms, bomb ${result.refuseGzipBomb256MiBMs} ms`,
    );
    console.log(`BENCH_JSON ${JSON.stringify(result)}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
