/**
 * WorkerPlugins + router bench, every ratio against a baseline measured in the same run:
 *  - req/s of a plugin route through the daemon (router + worker round trip) vs the same handler on bare node:http
 *    and on Fastify 5 (load generator in a child process, keep-alive, 16 connections);
 *  - hot swap v1<->v2 50 times under load: failures, non-2xx, swap latency;
 *  - plugin load time; main-thread heap across 200 load/unload cycles.
 * Prints `BENCH_JSON {...}` last.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pluginPaths, standaloneConfig } from "@hecate/sdk";
import Fastify from "fastify";
import { Router } from "../src/http/router.js";
import { createHttpServer, listen } from "../src/http/server.js";
import { type PluginSpec, WorkerPlugins } from "../src/worker/worker-plugins.js";
import { type LoadResult, pct, round, loadgen as runLoad } from "./run-load.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
const DURATION = Number(process.env.BENCH_DURATION_MS ?? 5000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const loadgen = (url: string, durationMs = DURATION, onChild?: (stop: () => void) => void) =>
  runLoad(url, CONNECTIONS, durationMs, onChild);
const CYCLES = Number(process.env.BENCH_CYCLES ?? 200);
const SWAPS = Number(process.env.BENCH_SWAPS ?? 50);

// The handler under test, identical in both setups.
const handler = () => ({ hello: "world", n: 42 });

function pluginSource(version: string): string {
  return `
export function manifest() { return { name: "bench", version: ${JSON.stringify(version)} }; }
export function init() {}
const handler = ${handler.toString()};
export function routes() { return [
  { method: "GET", path: "/hello", handler },
  { method: "GET", path: "/who", handler: () => ({ version: ${JSON.stringify(version)} }) },
]; }
`;
}

function writePlugin(home: string, version: string): PluginSpec {
  const paths = pluginPaths(home, "bench");
  const dir = join(paths.root, `dist-${version}`);
  mkdirSync(dir, { recursive: true });
  mkdirSync(paths.static, { recursive: true });
  const entry = join(dir, "index.js");
  writeFileSync(entry, pluginSource(version));
  const config = standaloneConfig("bench", { paths, pluginVersion: version, standalone: false, storeId: null });
  return { name: "bench", version, root: paths.root, entry, staticDir: paths.static, config };
}

const heapMiB = () => {
  gc();
  gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
};

const home = mkdtempSync(join(tmpdir(), "hecate-bench-"));
const router = new Router();
const server = createHttpServer(router);
const port = await listen(server);
const workers = new WorkerPlugins({ router, home });
const bare = createServer({ keepAliveTimeout: 65_000 }, (_req, res) => {
  const body = JSON.stringify(handler());
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
const barePort = await listen(bare);
// Fastify 5 with the same handler (its own JSON serialization, no schema): the framework baseline.
const fastify = Fastify({ keepAliveTimeout: 65_000 });
fastify.get("/hello", async () => handler());
await fastify.listen({ port: 0, host: "127.0.0.1" });
const fastifyPort = (fastify.server.address() as { port: number }).port;

const v1 = writePlugin(home, "1.0.0");
const v2 = writePlugin(home, "2.0.0");
await workers.load(v1);

// 1. throughput: alternate to spread machine noise, keep the best of two runs each.
console.log(`throughput: ${CONNECTIONS} keep-alive connections, ${DURATION} ms per run`);
const bareRuns: LoadResult[] = [];
const daemonRuns: LoadResult[] = [];
const fastifyRuns: LoadResult[] = [];
for (let i = 0; i < 2; i++) {
  bareRuns.push(await loadgen(`http://127.0.0.1:${barePort}/hello`));
  fastifyRuns.push(await loadgen(`http://127.0.0.1:${fastifyPort}/hello`));
  daemonRuns.push(await loadgen(`http://127.0.0.1:${port}/plugin/bench/api/hello`));
}
const best = (rs: LoadResult[]) => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
const bareBest = best(bareRuns);
const fastifyBest = best(fastifyRuns);
const daemonBest = best(daemonRuns);
console.log(`  bare node:http  ${bareBest.rps.toFixed(0)} req/s (p99 ${bareBest.p99_ms.toFixed(2)} ms)`);
console.log(`  fastify 5       ${fastifyBest.rps.toFixed(0)} req/s (p99 ${fastifyBest.p99_ms.toFixed(2)} ms)`);
console.log(`  daemon+worker   ${daemonBest.rps.toFixed(0)} req/s (p99 ${daemonBest.p99_ms.toFixed(2)} ms)`);

// 2. hot swap under load.
let stopLoad = () => {};
const swapLoad = loadgen(`http://127.0.0.1:${port}/plugin/bench/api/who`, 600_000, (stop) => {
  stopLoad = stop;
});
await new Promise((r) => setTimeout(r, 500));
// swapMs: swap() call -> old worker gone; tableMs: swap() call -> new version mounted (what clients feel).
const swapMs: number[] = [];
const tableMs: number[] = [];
let t0 = 0;
workers.on("swapped", () => tableMs.push(performance.now() - t0));
let swaps = 0;
while (swaps < SWAPS) {
  t0 = performance.now();
  await workers.swap("bench", swaps % 2 === 0 ? v2 : v1, { deadlineMs: 2000 });
  swapMs.push(performance.now() - t0);
  swaps++;
}
await new Promise((r) => setTimeout(r, 300));
stopLoad();
const swapResult = await swapLoad;
const versions = Object.keys(swapResult.bodies).map((b) => JSON.parse(b).version as string);
const foreign = versions.filter((v) => v !== "1.0.0" && v !== "2.0.0");
console.log(
  `hot swap: ${swaps} swaps under load, ${swapResult.ok} ok, ${swapResult.non2xx} non-2xx, ${swapResult.errors} errors, versions ${versions.join(",")}, new version mounted p50 ${pct(tableMs, 0.5).toFixed(1)} ms, old worker gone p50 ${pct(swapMs, 0.5).toFixed(1)} ms`,
);
await workers.unload("bench");

// 3. load/unload cycles: load time and main heap.
for (let i = 0; i < 5; i++) {
  await workers.load(v1);
  await workers.unload("bench");
}
const heapBefore = heapMiB();
const rssBefore = process.memoryUsage().rss / 2 ** 20;
const loadMs: number[] = [];
const workerReadyMs: number[] = [];
for (let i = 0; i < CYCLES; i++) {
  const t0 = performance.now();
  const info = await workers.load(i % 2 ? v2 : v1);
  loadMs.push(performance.now() - t0);
  workerReadyMs.push(info.loadMs);
  await workers.unload("bench", { deadlineMs: 1000 });
}
const heapAfter = heapMiB();
const rssAfter = process.memoryUsage().rss / 2 ** 20;
console.log(
  `load/unload x${CYCLES}: load p50 ${pct(loadMs, 0.5).toFixed(1)} ms, main heap ${heapBefore.toFixed(2)} -> ${heapAfter.toFixed(2)} MiB, rss ${rssBefore.toFixed(0)} -> ${rssAfter.toFixed(0)} MiB`,
);

await workers.close();
server.closeAllConnections();
bare.closeAllConnections();
await new Promise<void>((r) => server.close(() => r()));
await new Promise<void>((r) => bare.close(() => r()));
await fastify.close();
rmSync(home, { recursive: true, force: true });

const result = {
  bench: "daemon-runtime",
  connections: CONNECTIONS,
  duration_ms: DURATION,
  rps_bare_node_http: round(bareBest.rps, 0),
  rps_daemon_plugin_route: round(daemonBest.rps, 0),
  rps_fastify: round(fastifyBest.rps, 0),
  ratio_daemon_vs_bare: round(daemonBest.rps / bareBest.rps, 3),
  ratio_daemon_vs_fastify: round(daemonBest.rps / fastifyBest.rps, 3),
  ratio_fastify_vs_bare: round(fastifyBest.rps / bareBest.rps, 3),
  p99_ms_bare: round(bareBest.p99_ms),
  p99_ms_fastify: round(fastifyBest.p99_ms),
  p99_ms_daemon: round(daemonBest.p99_ms),
  throughput_failures: daemonRuns.reduce((a, r) => a + r.non2xx + r.errors, 0),
  hot_swap: {
    swaps,
    requests_ok: swapResult.ok,
    non2xx: swapResult.non2xx,
    errors: swapResult.errors,
    foreign_versions: foreign.length,
    mounted_ms_p50: round(pct(tableMs, 0.5), 1),
    mounted_ms_p95: round(pct(tableMs, 0.95), 1),
    swap_ms_p50: round(pct(swapMs, 0.5), 1),
    swap_ms_p95: round(pct(swapMs, 0.95), 1),
  },
  load_ms_p50: round(pct(loadMs, 0.5), 1),
  load_ms_p95: round(pct(loadMs, 0.95), 1),
  worker_ready_ms_p50: round(pct(workerReadyMs, 0.5), 1),
  cycles: CYCLES,
  main_heap_mib_before: round(heapBefore),
  main_heap_mib_after_cycles: round(heapAfter),
  main_heap_growth_mib: round(heapAfter - heapBefore),
  rss_mib_before: round(rssBefore, 0),
  rss_mib_after_cycles: round(rssAfter, 0),
};
console.log(`BENCH_JSON ${JSON.stringify(result)}`);
