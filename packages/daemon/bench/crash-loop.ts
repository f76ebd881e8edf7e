/**
 * Crash-recovery harness: runs the real daemon (`main.js`) as a child process, drives install / upgrade / remove /
 * deactivate / activate through the admin API (Unix socket), kill -9's the daemon at a random point (mid-request,
 * mid-upload, or between operations; sometimes once more during the restart's boot recovery), restarts it and checks
 * the invariants:
 *   - the lifecycle store passes PRAGMA integrity_check;
 *   - every plugin settles: loaded (and its API answers with the installed version), deactivated, removed, or failed
 *     with a last error -- nothing stays half-way (installed / extracting / extracted / activated);
 *   - no orphans on disk: no .staging-* / .old-* dirs, no run/incoming-* upload of a killed request, no package dir
 *     of a removed plugin;
 *   - no duplicate events: revisions contiguous, generation / activation counters step by one, at most one extract
 *     outcome per generation and one load outcome per activation;
 *   - an operation the API acknowledged before the kill is durable (its effect is visible after the restart).
 *
 *   node dist/bench/crash-loop.js [iterations]      (or CRASH_LOOP_ITERATIONS; default 200; CRASH_LOOP_SEED)
 *
 * Prints `BENCH_JSON {...}` with iterations, violations (must be 0) and restart time percentiles.
 * test/hardening/crash-loop.test.ts runs `runCrashLoop` with a small count.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import Database from "better-sqlite3";
import { buildPackage, type ChildDaemon, spawnDaemon, unixRequest } from "../test/lifecycle/helpers.js";

export interface CrashLoopOptions {
  iterations: number;
  seed?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface CrashLoopResult {
  iterations: number;
  violations: string[];
  kills: { mid_operation: number; between_operations: number; during_boot: number };
  operations: Record<string, number>;
  acknowledged_before_kill: number;
  settled_failed: number;
  restart_ms_p50: number;
  restart_ms_p99: number;
  restart_ms_max: number;
  seed: number;
}

type Op = "install" | "install-path" | "upgrade" | "remove" | "remove-purge" | "deactivate" | "activate";

interface View {
  name: string;
  version: string | null;
  status: string;
  lastError: { stage?: string; code?: string; message: string } | null;
}

const NAMES = ["alpha", "beta", "gamma"];
const VERSIONS = ["1.0.0", "2.0.0"];
const SETTLED = new Set(["loaded", "deactivated", "removed", "failed"]);

/** mulberry32: a tiny seeded PRNG so a failing run can be replayed with CRASH_LOOP_SEED. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
};

export async function runCrashLoop(opts: CrashLoopOptions): Promise<CrashLoopResult> {
  const seed = opts.seed ?? Date.now() % 2 ** 31;
  const random = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)];
  const log = opts.log ?? (() => {});
  const work = mkdtempSync(join(tmpdir(), "hecate-crash-"));
  const home = join(work, "home");
  const violations: string[] = [];
  const seen = new Set<string>();
  const operations: Record<string, number> = {};
  const restartMs: number[] = [];
  const kills = { mid_operation: 0, between_operations: 0, during_boot: 0 };
  let acknowledged = 0;
  let settledFailed = 0;
  let daemon: ChildDaemon | undefined;

  const packages = new Map<string, string>();
  for (const name of NAMES)
    for (const version of VERSIONS) packages.set(`${name}@${version}`, await buildPackage(work, { name, version }));

  const start = async (): Promise<{ d: ChildDaemon; url: string; ms: number }> => {
    const t0 = performance.now();
    const d = spawnDaemon(home);
    const url = await d.url; // printed once boot recovery finished and the daemon is ready
    return { d, url, ms: performance.now() - t0 };
  };
  const kill9 = async (d: ChildDaemon) => {
    d.child.kill("SIGKILL");
    await d.exited;
  };
  const api = (d: ChildDaemon, method: string, path: string, body?: string | Buffer, headers = {}) =>
    unixRequest(d.socketPath, method, path, body, headers);

  try {
    let { d, url } = await start();
    daemon = d;
    for (let i = 0; i < opts.iterations; i++) {
      const list = (await api(d, "GET", "/admin/api/plugins")).json().plugins as View[];
      const byName = new Map(list.map((v) => [v.name, v]));
      const name = pick(NAMES);
      const cur = byName.get(name);
      const present = cur && cur.status !== "removed";
      const op: Op = !present
        ? pick<Op>(["install", "install-path"])
        : pick<Op>(
            cur.status === "deactivated" || cur.status === "failed"
              ? ["activate", "remove", "remove-purge", "upgrade"]
              : ["upgrade", "upgrade", "remove", "remove-purge", "deactivate"],
          );
      operations[op] = (operations[op] ?? 0) + 1;
      const nextVersion = cur?.version === "1.0.0" ? "2.0.0" : "1.0.0";
      const targetVersion = op.startsWith("install") ? pick(VERSIONS) : nextVersion;
      const archive = packages.get(`${name}@${targetVersion}`)!;
      const request = (): Promise<{ status: number }> => {
        switch (op) {
          case "install":
            return api(d, "POST", "/admin/api/plugins?wait=loaded", readFileSync(archive), {
              "content-type": "application/gzip",
            });
          case "install-path":
            return api(d, "POST", "/admin/api/plugins", JSON.stringify({ path: archive }), {
              "content-type": "application/json",
            });
          case "upgrade":
            return api(d, "POST", `/admin/api/plugins/${name}/upgrade`, readFileSync(archive), {
              "content-type": "application/gzip",
            });
          case "remove":
            return api(d, "DELETE", `/admin/api/plugins/${name}`);
          case "remove-purge":
            return api(d, "DELETE", `/admin/api/plugins/${name}?purge=1`);
          case "deactivate":
            return api(d, "POST", `/admin/api/plugins/${name}/deactivate`);
          case "activate":
            return api(d, "POST", `/admin/api/plugins/${name}/activate`);
        }
      };
      // Kill mid-operation (random delay, often before the reply) or right after the reply.
      const between = random() < 0.25;
      let answered: { status: number } | undefined;
      const pending = request().then(
        (r) => {
          answered = r;
        },
        () => {},
      );
      if (between) await pending;
      // Squared: most kills land in the first tens of ms, where upload, extraction and loading happen.
      else await new Promise((r) => setTimeout(r, Math.floor(random() ** 2 * 150)));
      await kill9(d);
      await pending;
      if (between) kills.between_operations++;
      else kills.mid_operation++;
      const ack = answered && answered.status < 300 ? op : undefined;
      if (ack) acknowledged++;

      // Sometimes the restart itself is killed (during boot recovery: process managers resuming, packages being
      // recovered, plugins loading), before the final restart.
      if (random() < 0.15) {
        const early = spawnDaemon(home);
        early.url.catch(() => {});
        await new Promise((r) => setTimeout(r, 50 + Math.floor(random() * 600)));
        await kill9(early);
        kills.during_boot++;
      }
      const restarted = await start();
      d = restarted.d;
      url = restarted.url;
      daemon = d;
      restartMs.push(restarted.ms);
      const found = await checkInvariants(d, url, home, {
        name,
        op: ack,
        status: cur?.status,
        version: targetVersion,
      });
      // History checks see the whole store again every round: report each violation once, at its first round.
      for (const v of found) {
        if (seen.has(v)) continue;
        seen.add(v);
        violations.push(`#${i} ${op} ${name}${ack ? " (acked)" : ""}: ${v}`);
      }
      settledFailed += (await settledList(d)).filter((v) => v.status === "failed").length;
      log(
        `#${i} ${op} ${name} kill=${between ? "after-reply" : "mid"}${ack ? " acked" : ""} restart ${restarted.ms.toFixed(0)} ms${found.length ? ` VIOLATIONS ${found.join("; ")}` : ""}`,
      );
    }
    await kill9(d);
    daemon = undefined;
  } finally {
    if (daemon) await kill9(daemon).catch(() => {});
    rmSync(work, { recursive: true, force: true });
  }
  return {
    iterations: opts.iterations,
    violations,
    kills,
    operations,
    acknowledged_before_kill: acknowledged,
    settled_failed: settledFailed,
    restart_ms_p50: Math.round(pct(restartMs, 0.5)),
    restart_ms_p99: Math.round(pct(restartMs, 0.99)),
    restart_ms_max: Math.round(Math.max(0, ...restartMs)),
    seed,
  };
}

async function settledList(d: ChildDaemon): Promise<View[]> {
  return (await unixRequest(d.socketPath, "GET", "/admin/api/plugins")).json().plugins as View[];
}

/** Waits (bounded) until every plugin is in a settled state, then checks store, disk, routes and event history. */
async function checkInvariants(
  d: ChildDaemon,
  url: string,
  home: string,
  last: { name: string; op: Op | undefined; status: string | undefined; version: string },
): Promise<string[]> {
  const v: string[] = [];
  let views: View[] = [];
  const deadline = Date.now() + 20_000;
  for (;;) {
    views = await settledList(d);
    if (views.every((p) => SETTLED.has(p.status))) break;
    if (Date.now() > deadline) {
      v.push(`not settled after 20 s: ${views.map((p) => `${p.name}=${p.status}`).join(", ")}`);
      break;
    }
    await new Promise((r) => setTimeout(r, 25));
  }

  // Store integrity + event history, read next to the running daemon (WAL: readers do not block it).
  const db = new Database(join(home, "lifecycle", "plugins.sqlite"), { readonly: true, fileMustExist: true });
  try {
    const ok = db.pragma("integrity_check", { simple: true });
    if (ok !== "ok") v.push(`integrity_check: ${String(ok)}`);
    const rows = db.prepare("SELECT stream, revision, type, data FROM events ORDER BY position").all() as {
      stream: string;
      revision: number;
      type: string;
      data: string;
    }[];
    v.push(...checkHistory(rows));
  } finally {
    db.close();
  }

  for (const e of safeList(join(home, "run")))
    if (e.startsWith("incoming-")) v.push(`orphan upload run/${e} after recovery`);
  for (const p of views) {
    const root = join(home, "plugins", p.name);
    const entries = safeList(root);
    for (const e of entries)
      if (e.startsWith(".staging-") || e.startsWith(".old-")) v.push(`${p.name}: orphan ${e} after recovery`);
    if (p.status === "failed" && !p.lastError?.message) v.push(`${p.name}: failed without a last error`);
    if (p.status === "removed" && entries.includes("package")) v.push(`${p.name}: removed but package/ still there`);
    const who = await fetch(`${url}/plugin/${p.name}/api/who`).catch((e: Error) => e);
    if (p.status === "loaded") {
      if (who instanceof Error || who.status !== 200) {
        v.push(`${p.name}: loaded but /who -> ${who instanceof Error ? who.message : who.status}`);
        continue;
      }
      const body = (await who.json()) as { version: string };
      if (body.version !== p.version) v.push(`${p.name}: view says ${p.version}, the API answers ${body.version}`);
      const manifest = JSON.parse(readFileSync(join(root, "package", "manifest.json"), "utf8")) as { version: string };
      if (manifest.version !== p.version) v.push(`${p.name}: view ${p.version}, package on disk ${manifest.version}`);
    } else if (!(who instanceof Error)) {
      await who.body?.cancel();
      if (who.status === 200) v.push(`${p.name}: ${p.status} but its API still answers`);
    }
  }

  // Acknowledged = durable: the effect of an operation answered with 2xx before the kill survives it.
  if (last.op) {
    const p = views.find((x) => x.name === last.name);
    const status = p?.status;
    const expect: Record<Op, string[]> = {
      install: ["loaded"],
      "install-path": ["loaded"],
      // An upgrade of a deactivated plugin replaces its package and leaves it deactivated.
      upgrade: last.status === "deactivated" ? ["deactivated"] : ["loaded"],
      remove: ["removed"],
      "remove-purge": ["removed"],
      deactivate: ["deactivated"],
      activate: ["loaded"],
    };
    if (!status || !expect[last.op].includes(status))
      v.push(`acknowledged ${last.op} lost: ${last.name} is ${status ?? "unknown"} after restart`);
    if (last.version && (last.op.startsWith("install") || last.op === "upgrade") && p?.version !== last.version)
      v.push(`acknowledged ${last.op} to ${last.version} lost: ${last.name} is at ${p?.version} after restart`);
  }
  return v;
}

function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Duplicate / out-of-order events of the plugin streams. */
export function checkHistory(rows: { stream: string; revision: number; type: string; data: string }[]): string[] {
  const v: string[] = [];
  const streams = new Map<string, typeof rows>();
  for (const r of rows) {
    const list = streams.get(r.stream) ?? [];
    list.push(r);
    streams.set(r.stream, list);
  }
  for (const [stream, list] of streams) {
    if (!stream.startsWith("plugin-")) continue;
    let generation = 0;
    let activation = 0;
    const extractOutcome = new Set<number>();
    const loadOutcome = new Set<string>();
    let extracted = 0;
    list.forEach((r, i) => {
      if (r.revision !== i) v.push(`${stream}: revision ${r.revision} at index ${i}`);
      const data = JSON.parse(r.data) as { generation?: number; activation?: number; boot?: boolean };
      switch (r.type) {
        case "plugin_installed_v1":
        case "plugin_upgraded_v1":
          if (data.generation !== generation + 1)
            v.push(`${stream}: ${r.type} generation ${data.generation} after ${generation}`);
          generation = data.generation ?? generation;
          break;
        case "plugin_package_extracted_v1":
        case "plugin_extract_failed_v1":
          if (extractOutcome.has(data.generation ?? -1))
            v.push(`${stream}: second extract outcome for generation ${data.generation}`);
          extractOutcome.add(data.generation ?? -1);
          extracted = data.generation ?? extracted;
          break;
        case "plugin_activated_v1":
          if (data.activation !== activation + 1)
            v.push(`${stream}: activation ${data.activation} after ${activation}`);
          activation = data.activation ?? activation;
          break;
        case "plugin_load_confirmed_v1":
        case "plugin_load_failed_v1":
          // A boot reload records the outcome of the same activation again, on purpose (boot: true).
          if (data.boot) break;
          {
            // An upgrade loads a new generation under the same activation: one outcome per (activation, generation).
            const key = `${data.activation}/${extracted}`;
            if (loadOutcome.has(key))
              v.push(
                `${stream}: second load outcome for activation ${data.activation} of generation ${extracted} (${list
                  .slice(Math.max(0, i - 5), i + 1)
                  .map((x) => x.type.replace(/^plugin_|_v1$/g, ""))
                  .join(",")})`,
              );
            loadOutcome.add(key);
          }
          break;
      }
    });
  }
  return v;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const iterations = Number(process.argv[2] ?? process.env.CRASH_LOOP_ITERATIONS ?? 200);
  const seed = process.env.CRASH_LOOP_SEED ? Number(process.env.CRASH_LOOP_SEED) : undefined;
  const r = await runCrashLoop({
    iterations,
    seed,
    log: process.env.CRASH_LOOP_VERBOSE ? (l) => console.log(l) : undefined,
  });
  console.log(
    `crash-loop: ${r.iterations} kill -9 iterations (seed ${r.seed}), ${r.violations.length} violations, restart p50 ${r.restart_ms_p50} ms p99 ${r.restart_ms_p99} ms`,
  );
  for (const line of r.violations.slice(0, 50)) console.log(`  VIOLATION ${line}`);
  console.log(`BENCH_JSON ${JSON.stringify({ bench: "daemon-crash-loop", ...r, violations: r.violations.length })}`);
  if (r.violations.length) process.exitCode = 1;
}
