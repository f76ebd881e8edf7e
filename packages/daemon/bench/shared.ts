/**
 * Direct-call (`isolation: "shared"`) plugins, every figure against a baseline measured in the same run:
 *  - req/s of a trivial JSON route served by the shared host (router + direct call into the plugin's SDK
 *    dispatcher, on the server's main thread) vs the same handler on bare node:http: `ratio_direct_vs_bare`
 *    (load generator in a child process, keep-alive, 16 connections; runs alternated, best of each), with the
 *    server CPU per request of both (steadier than req/s on a shared machine);
 *  - recycle under load: a real daemon serving a shared and a worker plugin, the main plugin host recycled
 *    BENCH_RECYCLES times (default 3) while the load runs: failed requests (must be 0), switch and drain times.
 * Prints `BENCH_JSON {...}` last.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { packPlugin } from "@hecate/package";
import { pluginPaths, standaloneConfig } from "@hecate/sdk";
import { startDaemon } from "../src/daemon.js";
import { SharedPluginHost } from "../src/host/shared/shared-host.js";
import { Router } from "../src/http/router.js";
import { createHttpServer, listen } from "../src/http/server.js";
import type { RecycleResult } from "../src/supervisor/plugin-hosts.js";
import { type LoadResult, pct, round, loadgen as runLoad } from "./run-load.js";

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 5000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const RECYCLES = Number(process.env.BENCH_RECYCLES ?? 3);

// The handler under test, identical in both setups.
const handler = () => ({ hello: "world", n: 42 });

const source = (name: string) => `
export function manifest() { return { name: ${JSON.stringify(name)}, version: "1.0.0" }; }
export function init() {}
const handler = ${handler.toString()};
export function routes() { return [{ method: "GET", path: "/hello", handler }]; }
`;

/** req/s of `url` and the CPU this process spent per answered request (µs). */
async function measure(url: string, durationMs = DURATION): Promise<LoadResult & { cpuUs: number }> {
  const c0 = process.cpuUsage();
  const r = await runLoad(url, CONNECTIONS, durationMs);
  const c = process.cpuUsage(c0);
  return { ...r, cpuUs: (c.user + c.system) / Math.max(1, r.ok) };
}

const home = mkdtempSync(join(tmpdir(), "hecate-bench-shared-"));

// 1. direct-call route vs bare node:http, both served by this process.
const paths = pluginPaths(home, "bench");
mkdirSync(paths.static, { recursive: true });
mkdirSync(join(paths.root, "dist"), { recursive: true });
const entry = join(paths.root, "dist", "index.js");
writeFileSync(entry, source("bench"));
const router = new Router();
const shared = new SharedPluginHost(
  router,
  home,
  {},
  () => {},
  () => {},
);
await shared.load({
  name: "bench",
  version: "1.0.0",
  root: paths.root,
  entry,
  staticDir: paths.static,
  config: standaloneConfig("bench", { paths, standalone: false, storeId: null }),
});
const server = createHttpServer(router);
const port = await listen(server);
const bare = createServer({ keepAliveTimeout: 65_000 }, (_req, res) => {
  const body = JSON.stringify(handler());
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
const barePort = await listen(bare);
console.log(`throughput: ${CONNECTIONS} keep-alive connections, ${DURATION} ms per run`);
const bareRuns: Awaited<ReturnType<typeof measure>>[] = [];
const directRuns: Awaited<ReturnType<typeof measure>>[] = [];
for (let i = 0; i < 3; i++) {
  bareRuns.push(await measure(`http://127.0.0.1:${barePort}/hello`));
  directRuns.push(await measure(`http://127.0.0.1:${port}/plugin/bench/api/hello`));
}
const best = <T extends LoadResult>(rs: T[]) => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
const bareBest = best(bareRuns);
const directBest = best(directRuns);
const cpu = (rs: { cpuUs: number }[]) => Math.min(...rs.map((r) => r.cpuUs));
console.log(`  bare node:http  ${bareBest.rps.toFixed(0)} req/s (p99 ${bareBest.p99_ms.toFixed(2)} ms)`);
console.log(`  direct call     ${directBest.rps.toFixed(0)} req/s (p99 ${directBest.p99_ms.toFixed(2)} ms)`);
console.log(`  server CPU per request: bare ${cpu(bareRuns).toFixed(1)} us, direct ${cpu(directRuns).toFixed(1)} us`);
await shared.close();
server.closeAllConnections();
bare.closeAllConnections();
server.close();
bare.close();

// 2. recycle under load, through a real daemon.
const work = mkdtempSync(join(tmpdir(), "hecate-bench-recycle-"));
const daemon = await startDaemon({ home: join(work, "home"), port: 0, logLevel: "silent", containers: false });
for (const [name, manifest] of [
  ["direct", { isolation: "shared" }],
  ["threaded", {}],
] as const) {
  const src = join(work, name);
  mkdirSync(join(src, "dist"), { recursive: true });
  writeFileSync(join(src, "manifest.json"), JSON.stringify({ name, version: "1.0.0", ...manifest }));
  writeFileSync(join(src, "dist", "index.js"), source(name));
  const archive = join(work, `${name}.tar.gz`);
  await packPlugin(src, archive);
  await daemon.lifecycle.install(archive, "bench");
  for (let t = Date.now(); (await fetch(`${daemon.url}/plugin/${name}/api/hello`)).status !== 200; ) {
    if (Date.now() - t > 30_000) throw new Error(`${name} not serving`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
let stopLoad: (() => void)[] = [];
const loads = ["direct", "threaded"].map((n, i) =>
  runLoad(`${daemon.url}/plugin/${n}/api/hello`, i === 0 ? CONNECTIONS : 4, 600_000, (stop) => stopLoad.push(stop)),
);
await new Promise((r) => setTimeout(r, 1000));
const recycles: RecycleResult[] = [];
for (let i = 0; i < RECYCLES; i++) {
  recycles.push(await daemon.hosts.recycle("bench"));
  await new Promise((r) => setTimeout(r, 500));
}
for (const stop of stopLoad) stop();
stopLoad = [];
const [direct, threaded] = await Promise.all(loads);
const failed = direct.errors + direct.non2xx + threaded.errors + threaded.non2xx;
console.log(
  `recycle under load: ${RECYCLES} recycles, ${direct.ok + threaded.ok} ok, ${failed} failed; switch p50 ${pct(
    recycles.map((r) => r.switchMs),
    0.5,
  )} ms, old host gone p50 ${pct(
    recycles.map((r) => r.ms),
    0.5,
  )} ms`,
);
await daemon.close();
rmSync(work, { recursive: true, force: true });
rmSync(home, { recursive: true, force: true });

const result = {
  bench: "direct-call",
  connections: CONNECTIONS,
  duration_ms: DURATION,
  rps_bare_node_http: round(bareBest.rps, 0),
  rps_direct_call_route: round(directBest.rps, 0),
  ratio_direct_vs_bare: round(directBest.rps / bareBest.rps, 3),
  ratio_direct_vs_bare_goal: 0.85,
  p99_ms_bare: round(bareBest.p99_ms),
  p99_ms_direct: round(directBest.p99_ms),
  cpu_us_per_req_bare: round(cpu(bareRuns), 1),
  cpu_us_per_req_direct: round(cpu(directRuns), 1),
  throughput_failures: directRuns.reduce((a, r) => a + r.non2xx + r.errors, 0),
  recycle_under_load: {
    recycles: RECYCLES,
    requests_ok: direct.ok + threaded.ok,
    failures: failed,
    switch_ms_p50: pct(
      recycles.map((r) => r.switchMs),
      0.5,
    ),
    old_host_gone_ms_p50: pct(
      recycles.map((r) => r.ms),
      0.5,
    ),
    all_drained: recycles.every((r) => r.drained),
  },
};
console.log(`BENCH_JSON ${JSON.stringify(result)}`);
process.exit(0);
