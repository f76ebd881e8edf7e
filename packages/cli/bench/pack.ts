/**
 * Pack time and package size of examples/taskboard, before and after `hecate plugin pack` learned to build and ship
 * dependencies, each run as the real command (a child process, so Node's start-up is in every figure):
 *  - before: the example's own scripts/pack.mjs (what the set-up used: no build, no dependencies; the CLI could not
 *    pack the taskboard then);
 *  - after, no build: `hecate plugin pack --no-build` (staging, dependency plan, import check, digests, archive check);
 *  - after: `hecate plugin pack` (the above plus the project's build, here an up-to-date `tsc -b` and the manifest).
 * Median of BENCH_PACK_RUNS runs (default 5). Prints `BENCH_JSON {...}` last.
 *   node dist/bench/pack.js
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const RUNS = Number(process.env.BENCH_PACK_RUNS ?? 5);
const CLI = fileURLToPath(new URL("../src/main.js", import.meta.url));
const TASKBOARD = fileURLToPath(new URL("../../../../examples/taskboard/", import.meta.url));

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median wall time (ms) of `args` run with node, and the size of the archive it wrote. */
function measure(args: (out: string) => string[], out: string): { ms: number; bytes: number } {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    rmSync(out, { force: true });
    const started = performance.now();
    execFileSync(process.execPath, args(out), { stdio: "pipe" });
    times.push(performance.now() - started);
  }
  return { ms: Math.round(median(times)), bytes: statSync(out).size };
}

const work = mkdtempSync(join(tmpdir(), "hecate-bench-pack-"));
try {
  // one build first, so every "after" run sees the up-to-date project a developer re-packs
  execFileSync(process.execPath, [CLI, "plugin", "pack", TASKBOARD, "-o", join(work, "warm.tar.gz")], {
    stdio: "pipe",
  });
  const before = measure((out) => [join(TASKBOARD, "scripts", "pack.mjs"), out], join(work, "before.tar.gz"));
  const noBuild = measure(
    (out) => [CLI, "plugin", "pack", TASKBOARD, "-o", out, "--no-build"],
    join(work, "after-nobuild.tar.gz"),
  );
  const after = measure((out) => [CLI, "plugin", "pack", TASKBOARD, "-o", out], join(work, "after.tar.gz"));
  const result = {
    bench: "pack-taskboard",
    runs: RUNS,
    before_packMjs_ms: before.ms,
    before_packMjs_bytes: before.bytes,
    after_cliNoBuild_ms: noBuild.ms,
    after_cliNoBuild_bytes: noBuild.bytes,
    after_cli_ms: after.ms,
    after_cli_bytes: after.bytes,
  };
  console.log(
    `taskboard pack: before (scripts/pack.mjs) ${before.ms} ms, ${before.bytes} B; ` +
      `hecate plugin pack --no-build ${noBuild.ms} ms, ${noBuild.bytes} B; with its build ${after.ms} ms, ${after.bytes} B`,
  );
  console.log(`BENCH_JSON ${JSON.stringify(result)}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
