/**
 * Boot and memory bench on the real daemon (startDaemon: supervisor here, plugin host a child process), for
 * N = 1 / 10 / 30 installed in-process plugins (env BENCH_BOOT_SIZES, e.g. "1,10,30"):
 *  - install of N plugins through the admin API, all uploads sent at once (the daemon bounds the concurrency);
 *  - boot: startDaemon() called -> EVERY route of the N plugins answers 200 (polled), best of BENCH_BOOT_ROUNDS;
 *  - RSS of the plugin-host process, against the same host with no plugin loaded (measured in the same run), per
 *    plugin = (host RSS with N plugins - host RSS with none) / N, twice: 1.5 s after the boot
 *    (`rss_mib_per_plugin_after_boot_N`) and once the host has been idle IDLE_MS
 *    (`rss_mib_per_idle_plugin_N`): V8's memory reducer shrinks each idle isolate's heap some seconds after its
 *    allocations stop, so a plugin that serves nothing costs the second figure for as long as it stays idle;
 *  - CPU a boot costs per plugin: the fresh plugin host's CPU time (all its threads) until every route answered,
 *    divided by N (a figure that a busy, shared machine disturbs far less than the wall-clock boot time).
 * Baseline of the same run (empty-workers.ts, a process of its own): N EMPTY Node worker threads started with the
 * loader's concurrency: their time to all-ready, CPU and RSS per worker (after boot and idle, sampled as above) are
 * the floor of a one-isolate-per-plugin host on this machine (`ratio_boot_N_floor_vs_daemon` = that time / the daemon's boot; 1.0 = no cost beyond it).
 * Prints `BENCH_JSON {...}` last; the summary fields are `boot_30_plugins_ms` and `rss_mib_per_idle_plugin_30`.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type Daemon, startDaemon } from "../src/daemon.js";
import { buildPackage } from "../test/lifecycle/helpers.js";
import { pct, round } from "./run-load.js";

const SIZES = (process.env.BENCH_BOOT_SIZES ?? "1,10,30").split(",").map(Number);
const ROUNDS = Number(process.env.BENCH_BOOT_ROUNDS ?? 3);
/** How long a host stays idle before its idle RSS is read (V8's memory reducer acts some seconds after idling). */
const IDLE_MS = Number(process.env.BENCH_BOOT_IDLE_MS ?? 15_000);
const AFTER_BOOT_MS = 1500;

const start = (home: string) => startDaemon({ home, port: 0, logLevel: "silent", containers: false });
const names = (n: number) => Array.from({ length: n }, (_, i) => `boot${String(i).padStart(2, "0")}`);

/** VmRSS of a process in MiB (Linux /proc). */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** CPU time (user + system, all threads) a process has used, in ms (Linux /proc; clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface Floor {
  ms: number;
  cpuMs: number;
  rssMiBPerWorker: number;
  idleRssMiBPerWorker: number;
}

/** N empty Node workers in a fresh process (empty-workers.ts): best time of ROUNDS, median CPU and RSS after boot;
 * the idle RSS from the first round only (it idles IDLE_MS, the others do not wait for it). */
function emptyWorkers(n: number): Floor {
  const script = new URL("./empty-workers.js", import.meta.url).pathname;
  const runs = Array.from({ length: ROUNDS }, (_, i) =>
    JSON.parse(
      execFileSync(process.execPath, [script, String(n), String(AFTER_BOOT_MS), String(i === 0 ? IDLE_MS : 0)], {
        encoding: "utf8",
      }),
    ),
  );
  return {
    ms: Math.min(...runs.map((r) => r.ms)),
    cpuMs: pct(
      runs.map((r) => r.cpuMs),
      0.5,
    ),
    rssMiBPerWorker: pct(
      runs.map((r) => r.rssMiBPerWorker),
      0.5,
    ),
    idleRssMiBPerWorker: runs[0].idleRssMiBPerWorker,
  };
}

/** Median of 5 samples (200 ms apart) of the main plugin host's RSS, once the host has run `settleMs`. */
async function hostRss(d: Daemon, since: number, settleMs: number): Promise<number> {
  await new Promise((r) => setTimeout(r, Math.max(0, since + settleMs - performance.now())));
  const pid = d.hosts.pids()[1];
  if (!pid) throw new Error("no main plugin host");
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssMiB(pid));
    await new Promise((r) => setTimeout(r, 200));
  }
  return pct(samples, 0.5);
}

/** Polls every plugin's route until all answer 200 (each plugin is polled until it answers, all in parallel). */
async function allAnswer(url: string, plugins: string[], deadlineMs = 60_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  await Promise.all(
    plugins.map(async (name) => {
      for (;;) {
        try {
          const r = await fetch(`${url}/plugin/${name}/api/who`);
          await r.arrayBuffer();
          if (r.status === 200) return;
        } catch {}
        if (Date.now() > until) throw new Error(`${name} did not answer within ${deadlineMs} ms`);
        await new Promise((r) => setTimeout(r, 5));
      }
    }),
  );
}

const work = await mkdtemp(join(tmpdir(), "hecate-bench-boot-"));
const archives = new Map<string, string>();
for (const name of names(Math.max(...SIZES))) archives.set(name, await buildPackage(work, { name, version: "1.0.0" }));

// Baseline: a host with no plugin.
const emptyHome = join(work, "home-0");
let d = await start(emptyHome);
const emptySince = performance.now();
const rssEmpty = await hostRss(d, emptySince, AFTER_BOOT_MS);
const idleRssEmpty = await hostRss(d, emptySince, IDLE_MS);
await d.close();
console.log(`plugin host with no plugin: ${rssEmpty.toFixed(1)} MiB RSS after boot, ${idleRssEmpty.toFixed(1)} idle`);

const result: Record<string, unknown> = {
  bench: "daemon-boot",
  rounds: ROUNDS,
  idle_ms: IDLE_MS,
  host_rss_mib_no_plugins: round(rssEmpty, 1),
  host_idle_rss_mib_no_plugins: round(idleRssEmpty, 1),
};
for (const n of SIZES) {
  const home = join(work, `home-${n}`);
  const plugins = names(n);
  d = await start(home);
  const t0 = performance.now();
  const installs = await Promise.all(
    plugins.map((name) =>
      fetch(`${d.adminUrl}/admin/api/plugins`, {
        method: "POST",
        body: readFileSync(archives.get(name)!),
        headers: { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
      }).then(async (r) => ({ status: r.status, body: await r.text() })),
    ),
  );
  const bad = installs.find((r) => r.status !== 201);
  if (bad) throw new Error(`install: ${bad.status} ${bad.body}`);
  await allAnswer(d.url, plugins);
  const installMs = performance.now() - t0;
  await d.close();

  const boots: number[] = [];
  const hostCpu: number[] = [];
  let rss = 0;
  let idleRss = 0;
  for (let i = 0; i < ROUNDS; i++) {
    const t = performance.now();
    d = await start(home);
    await allAnswer(d.url, plugins);
    const answered = performance.now();
    boots.push(answered - t);
    hostCpu.push(cpuMs(d.hosts.pids()[1]!));
    if (i === 0) {
      rss = await hostRss(d, answered, AFTER_BOOT_MS);
      idleRss = await hostRss(d, answered, IDLE_MS);
    }
    await d.close();
  }
  const boot = Math.min(...boots);
  const perPlugin = (rss - rssEmpty) / n;
  const idlePerPlugin = (idleRss - idleRssEmpty) / n;
  const cpuPerPlugin = pct(hostCpu, 0.5) / n;
  const floor = emptyWorkers(n);
  console.log(
    `N=${n}: install (all at once) -> all answer ${installMs.toFixed(0)} ms; boot -> all answer best ${boot.toFixed(0)} ms (${boots.map((b) => b.toFixed(0)).join(", ")}); host RSS ${rss.toFixed(1)} MiB after boot (${perPlugin.toFixed(2)} MiB per plugin), ${idleRss.toFixed(1)} MiB idle (${idlePerPlugin.toFixed(2)} MiB per plugin); host CPU ${cpuPerPlugin.toFixed(0)} ms per plugin booted; floor (${n} empty workers): ${floor.ms.toFixed(0)} ms, ${(floor.cpuMs / n).toFixed(0)} ms CPU, ${floor.rssMiBPerWorker.toFixed(2)} MiB each after boot, ${floor.idleRssMiBPerWorker.toFixed(2)} idle; load average ${loadavg()[0].toFixed(2)}`,
  );
  result[`install_${n}_plugins_ms`] = round(installMs, 0);
  result[`boot_${n}_plugins_ms`] = round(boot, 0);
  result[`host_rss_mib_${n}_plugins`] = round(rss, 1);
  result[`host_idle_rss_mib_${n}_plugins`] = round(idleRss, 1);
  result[`rss_mib_per_plugin_after_boot_${n}`] = round(perPlugin, 2);
  result[`rss_mib_per_idle_plugin_${n}`] = round(idlePerPlugin, 2);
  result[`host_cpu_ms_per_plugin_boot_${n}`] = round(cpuPerPlugin, 0);
  result[`floor_boot_${n}_empty_workers_ms`] = round(floor.ms, 0);
  result[`floor_cpu_ms_per_empty_worker_${n}`] = round(floor.cpuMs / n, 0);
  result[`floor_rss_mib_per_empty_worker_after_boot_${n}`] = round(floor.rssMiBPerWorker, 2);
  result[`floor_rss_mib_per_idle_empty_worker_${n}`] = round(floor.idleRssMiBPerWorker, 2);
  result[`ratio_boot_${n}_floor_vs_daemon`] = round(floor.ms / boot, 3);
}
result.loadavg_1m = round(loadavg()[0], 2);
await rm(work, { recursive: true, force: true });
console.log(`BENCH_JSON ${JSON.stringify(result)}`);
