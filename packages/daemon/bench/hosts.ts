/**
 * The supervisor / plugin-host split, measured on the real daemon (startDaemon: this process is the supervisor, the
 * plugin host is its child process), every ratio against a baseline of the same run:
 *  - req/s of a plugin route through the daemon (supervisor accept -> host -> worker) vs the same handler on bare
 *    node:http (load generator in a child process, keep-alive, 16 connections);
 *  - kill -9 of the plugin host -> the plugin serves again: p50/p99 over BENCH_HOST_KILLS (default 20) kills;
 *  - kill -9 of the host BENCH_HOST_KILLS_UNDER_LOAD (default 100) times under load: failed requests (only those in
 *    flight at a kill may fail), and the lifecycle afterwards: exactly one plugin_host_crashed_v1 per kill, the
 *    plugin still loaded, its stream unchanged (no event lost or doubled).
 * Prints `BENCH_JSON {...}` last.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon } from "../src/daemon.js";
import { listen } from "../src/http/server.js";
import { buildPackage } from "../test/lifecycle/helpers.js";
import { type LoadResult, pct, round, loadgen as runLoad } from "./run-load.js";

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 5000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const loadgen = (url: string, durationMs = DURATION, onChild?: (stop: () => void) => void) =>
  runLoad(url, CONNECTIONS, durationMs, onChild);
const KILLS = Number(process.env.BENCH_HOST_KILLS ?? 20);
const KILLS_UNDER_LOAD = Number(process.env.BENCH_HOST_KILLS_UNDER_LOAD ?? 100);

const handler = () => ({ hello: "world", n: 42 });

const work = mkdtempSync(join(tmpdir(), "hecate-bench-hosts-"));
// Isolation would move the plugin out of the main host after 3 deaths: this bench measures restarts, not attribution.
const d = await startDaemon({
  home: join(work, "home"),
  port: 0,
  logLevel: "silent",
  containers: false,
  hosts: { crashesBeforeIsolation: Number.MAX_SAFE_INTEGER },
});
const archive = await buildPackage(work, {
  name: "bench",
  version: "1.0.0",
  extra: `const handler = ${handler.toString()};`,
  routes: `{ method: "GET", path: "/hello", handler },`,
});
const installed = await fetch(`${d.adminUrl}/admin/api/plugins`, {
  method: "POST",
  body: readFileSync(archive),
  headers: { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
});
if (installed.status !== 201) throw new Error(`install: ${installed.status} ${await installed.text()}`);
const bare = createServer({ keepAliveTimeout: 65_000 }, (_req, res) => {
  const body = JSON.stringify(handler());
  res.writeHead(200, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(body) });
  res.end(body);
});
const barePort = await listen(bare);
const route = `${d.url}/plugin/bench/api/hello`;

// 1. throughput through the split, alternating with the baseline; the best of two runs each.
console.log(
  `throughput through supervisor + plugin host: ${CONNECTIONS} keep-alive connections, ${DURATION} ms per run`,
);
const bareRuns: LoadResult[] = [];
const daemonRuns: LoadResult[] = [];
for (let i = 0; i < 2; i++) {
  bareRuns.push(await loadgen(`http://127.0.0.1:${barePort}/hello`, DURATION));
  daemonRuns.push(await loadgen(route, DURATION));
}
const best = (rs: LoadResult[]) => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
const bareBest = best(bareRuns);
const daemonBest = best(daemonRuns);
console.log(`  bare node:http        ${bareBest.rps.toFixed(0)} req/s (p99 ${bareBest.p99_ms.toFixed(2)} ms)`);
console.log(`  daemon (host+worker)  ${daemonBest.rps.toFixed(0)} req/s (p99 ${daemonBest.p99_ms.toFixed(2)} ms)`);

const hostPid = () => d.hosts.pids()[1];
async function killAndWait(): Promise<number> {
  const pid = hostPid();
  if (!pid) throw new Error("no main host");
  const t0 = performance.now();
  process.kill(pid, "SIGKILL");
  for (;;) {
    try {
      const r = await fetch(route, { signal: AbortSignal.timeout(10_000) });
      await r.arrayBuffer();
      if (r.status === 200 && hostPid() !== pid) return performance.now() - t0;
    } catch {}
    await new Promise((r) => setTimeout(r, 5));
  }
}

// 2. host kill -> serving again (idle).
const recovery: number[] = [];
for (let i = 0; i < KILLS; i++) recovery.push(await killAndWait());
console.log(
  `host kill -9 -> serving x${KILLS}: p50 ${pct(recovery, 0.5).toFixed(0)} ms, p99 ${pct(recovery, 0.99).toFixed(0)} ms`,
);

// 3. kill -9 under load, then the lifecycle's consistency.
const eventsBefore = (await d.lifecycle.events("bench")).length;
const crashesBefore = (await d.lifecycle.hostCrashes(100_000)).length;
let stop = () => {};
const underLoad = loadgen(route, 3_600_000, (s) => {
  stop = s;
});
await new Promise((r) => setTimeout(r, 500));
const loadRecovery: number[] = [];
for (let i = 0; i < KILLS_UNDER_LOAD; i++) loadRecovery.push(await killAndWait());
await new Promise((r) => setTimeout(r, 300));
stop();
const loaded = await underLoad;
const crashes = (await d.lifecycle.hostCrashes(100_000)).length - crashesBefore;
const view = d.lifecycle.view("bench");
const events = await d.lifecycle.events("bench");
const revisionsContiguous = events.every((e, i) => e.revision === i);
console.log(
  `host kill -9 x${KILLS_UNDER_LOAD} under load: ${loaded.ok} ok, ${loaded.non2xx} non-2xx, ${loaded.errors} failed; recovery p50 ${pct(loadRecovery, 0.5).toFixed(0)} ms, p99 ${pct(loadRecovery, 0.99).toFixed(0)} ms; host deaths recorded ${crashes}; plugin ${view?.status}; plugin events ${eventsBefore} -> ${events.length}`,
);

await d.close();
bare.closeAllConnections();
await new Promise<void>((r) => bare.close(() => r()));
rmSync(work, { recursive: true, force: true });

const result = {
  bench: "plugin-hosts",
  connections: CONNECTIONS,
  duration_ms: DURATION,
  rps_bare_node_http: round(bareBest.rps, 0),
  rps_daemon_plugin_route: round(daemonBest.rps, 0),
  ratio_daemon_split_vs_bare: round(daemonBest.rps / bareBest.rps, 3),
  p99_ms_bare: round(bareBest.p99_ms),
  p99_ms_daemon: round(daemonBest.p99_ms),
  throughput_failures: daemonRuns.reduce((a, r) => a + r.non2xx + r.errors, 0),
  host_kills: KILLS,
  host_recovery_ms_p50: round(pct(recovery, 0.5), 0),
  host_recovery_ms_p99: round(pct(recovery, 0.99), 0),
  host_kills_under_load: KILLS_UNDER_LOAD,
  under_load_requests_ok: loaded.ok,
  under_load_failed: loaded.non2xx + loaded.errors,
  under_load_recovery_ms_p50: round(pct(loadRecovery, 0.5), 0),
  under_load_recovery_ms_p99: round(pct(loadRecovery, 0.99), 0),
  // Must be 0: a host death not recorded exactly once, the plugin not loaded afterwards, its stream changed.
  lifecycle_violations:
    Math.abs(crashes - KILLS_UNDER_LOAD) +
    (view?.status === "loaded" ? 0 : 1) +
    (revisionsContiguous ? 0 : 1) +
    (events.length === eventsBefore ? 0 : 1),
};
console.log(`BENCH_JSON ${JSON.stringify(result)}`);
