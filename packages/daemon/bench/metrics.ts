/**
 * The cost of request metrics: req/s of the same plugin route (a parametric pattern, `/tasks/:id`) through a router
 * that counts every request (RequestMetrics: counter + histogram by plugin/route/method/status, as in every plugin
 * host) and through one that does not (HECATE_METRICS=0), in the same run, runs interleaved to spread machine noise.
 * Goal: metrics cost < 5% of route throughput. Prints `BENCH_JSON {...}` last.
 */
import { EventEmitter } from "node:events";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pluginPaths, standaloneConfig } from "@hecate/sdk";
import { Router } from "../src/http/router.js";
import { createHttpServer, listen } from "../src/http/server.js";
import { HostMetrics } from "../src/observe/host-metrics.js";
import { RequestMetrics } from "../src/observe/request-metrics.js";
import { type PluginSpec, WorkerPlugins } from "../src/worker/worker-plugins.js";
import { type LoadResult, loadgen, round } from "./run-load.js";

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 3000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const ROUNDS = Number(process.env.BENCH_METRICS_ROUNDS ?? 5);

function writePlugin(home: string): PluginSpec {
  const paths = pluginPaths(home, "bench");
  mkdirSync(paths.static, { recursive: true });
  const entry = join(paths.root, "index.js");
  writeFileSync(
    entry,
    `export function manifest() { return { name: "bench", version: "1.0.0" }; }
export function init() {}
export function routes() { return [{ method: "GET", path: "/tasks/:id", handler: (req) => ({ id: req.params.id, n: 42 }) }]; }
`,
  );
  const config = standaloneConfig("bench", { paths, pluginVersion: "1.0.0", standalone: false, storeId: null });
  return { name: "bench", version: "1.0.0", root: paths.root, entry, staticDir: paths.static, config };
}

async function setup(home: string, metrics: HostMetrics | undefined) {
  const router = new Router({ metrics: metrics?.requests });
  const server = createHttpServer(router);
  const port = await listen(server);
  const workers = new WorkerPlugins({ router, home });
  await workers.load(writePlugin(home));
  return { server, workers, url: `http://127.0.0.1:${port}/plugin/bench/api/tasks/7` };
}

const home = mkdtempSync(join(tmpdir(), "hecate-bench-metrics-"));
const hostMetrics = new HostMetrics(1);
const on = await setup(join(home, "on"), hostMetrics);
const off = await setup(join(home, "off"), undefined);

console.log(
  `metrics on vs off: ${CONNECTIONS} keep-alive connections, ${ROUNDS} x ${DURATION} ms runs each, interleaved`,
);
const onRuns: LoadResult[] = [];
const offRuns: LoadResult[] = [];
for (let i = 0; i < ROUNDS; i++) {
  // Alternate which goes first, so warm-up and drift hit both sides alike.
  if (i % 2 === 0) {
    offRuns.push(await loadgen(off.url, CONNECTIONS, DURATION));
    onRuns.push(await loadgen(on.url, CONNECTIONS, DURATION));
  } else {
    onRuns.push(await loadgen(on.url, CONNECTIONS, DURATION));
    offRuns.push(await loadgen(off.url, CONNECTIONS, DURATION));
  }
}
const median = (rs: LoadResult[]) => [...rs].sort((a, b) => a.rps - b.rps)[Math.floor(rs.length / 2)];
const onMed = median(onRuns);
const offMed = median(offRuns);
// The scrape itself: what one host answers (request series + gauges), timed.
const t0 = performance.now();
const scraped = hostMetrics.collect(await on.workers.metrics(1000));
const scrapeMs = performance.now() - t0;
const counted = scraped
  .find((m) => m.name === "hecate_plugin_http_requests_total")
  ?.values.reduce((a, v) => a + v.value, 0);
const served = onRuns.reduce((a, r) => a + r.ok + r.non2xx, 0);
console.log(`  metrics off  ${offMed.rps.toFixed(0)} req/s (p99 ${offMed.p99_ms.toFixed(2)} ms)`);
console.log(`  metrics on   ${onMed.rps.toFixed(0)} req/s (p99 ${onMed.p99_ms.toFixed(2)} ms)`);
console.log(`  counted ${counted} of ${served} answered requests; one host scrape ${scrapeMs.toFixed(2)} ms`);

// The same cost without the noise of a shared machine: what tracking adds to one request (a response's `finish`),
// in ns, against the time one request takes at the measured rate (the daemon's main thread is one core).
const fake = new RequestMetrics();
const N = 500_000;
let t1 = performance.now();
for (let i = 0; i < N; i++) {
  const res = Object.assign(new EventEmitter(), { statusCode: 200 }) as unknown as ServerResponse;
  fake.track(res, "bench", "/tasks/:id", "GET");
  res.emit("finish");
}
const tracked = (performance.now() - t1) / N;
t1 = performance.now();
for (let i = 0; i < N; i++) {
  const res = Object.assign(new EventEmitter(), { statusCode: 200 }) as unknown as ServerResponse;
  res.emit("finish");
}
const costNs = (tracked - (performance.now() - t1) / N) * 1e6;
const shareOfRequest = costNs / (1e9 / offMed.rps);
console.log(
  `  tracking one request costs ${costNs.toFixed(0)} ns: ${(shareOfRequest * 100).toFixed(2)}% of a request at ${offMed.rps.toFixed(0)} req/s`,
);

for (const s of [on, off]) {
  await s.workers.close();
  s.server.closeAllConnections();
  await new Promise<void>((r) => s.server.close(() => r()));
}
rmSync(home, { recursive: true, force: true });

const result = {
  bench: "daemon-metrics",
  connections: CONNECTIONS,
  duration_ms: DURATION,
  rounds: ROUNDS,
  rps_metrics_off: round(offMed.rps, 0),
  rps_metrics_on: round(onMed.rps, 0),
  ratio_metrics_on_vs_off: round(onMed.rps / offMed.rps, 3),
  goal_ratio_min: 0.95,
  p99_ms_off: round(offMed.p99_ms),
  p99_ms_on: round(onMed.p99_ms),
  requests_counted: counted ?? 0,
  requests_answered_on: served,
  scrape_ms: round(scrapeMs),
  metrics_ns_per_request: round(costNs, 0),
  metrics_share_of_request_time: round(shareOfRequest, 4),
  throughput_failures: [...onRuns, ...offRuns].reduce((a, r) => a + r.non2xx + r.errors, 0),
};
console.log(`BENCH_JSON ${JSON.stringify(result)}`);
