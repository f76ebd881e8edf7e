/**
 * Container proxy bench: req/s and p99 of `GET /hello` of a container plugin through the daemon's router + proxy
 * (TCP -> daemon -> Unix socket -> container) vs a direct undici client on the same container socket, one run.
 * Goal: ratio >= 0.5. The load generator runs in a child process (`--loadgen` mode of this file) so it never shares
 * the daemon's event loop; the same generator and concurrency drive both paths. Rounds alternate direct/proxy (the
 * order flips each round) and the medians are reported, so load from other processes on the machine hits both
 * sides alike. CPU time per request of each party (load generator, daemon, container cgroup) is reported too: on a
 * machine with few cores the three processes compete for the same CPUs, and the daemon's own cost per request is
 * the part the proxy controls. Needs root + podman; prints `BENCH_JSON {...}` last (with `skipped` when it cannot
 * run).
 *   node dist/bench/container.js      (BENCH_DURATION_MS per round, BENCH_ROUNDS, BENCH_CONNECTIONS)
 */
import { execFileSync, spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { type PluginManifest, pluginPaths } from "@hecate/sdk";
import { Pool } from "undici";
import { ContainerPlugins, type LoadedContainer, PodmanClient } from "../src/container/index.js";
import { Router } from "../src/http/router.js";
import { createHttpServer, listen } from "../src/http/server.js";

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);

interface LoadResult {
  ok: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** CPU time of the load generator itself, µs per request. */
  loadgen_cpu_us: number;
  daemon_cpu_us?: number;
  container_cpu_us?: number;
}

/** CPU time (ns) used so far by the cgroup of a container's main process (cgroup v1 cpuacct or v2 cpu.stat). */
function cgroupCpuNs(pid: number): number | undefined {
  try {
    for (const line of readFileSync(`/proc/${pid}/cgroup`, "utf8").split("\n")) {
      const [, controllers, path] = line.split(":");
      if (controllers?.split(",").includes("cpuacct"))
        return Number(readFileSync(`/sys/fs/cgroup/cpuacct${path}/cpuacct.usage`, "utf8"));
      if (controllers === "" && path) {
        const stat = readFileSync(`/sys/fs/cgroup${path}/cpu.stat`, "utf8");
        return Number(/usage_usec (\d+)/.exec(stat)?.[1]) * 1000;
      }
    }
  } catch {}
  return undefined;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function loadgenMain(origin: string, path: string, socketPath: string, conns: number, ms: number) {
  const pool = new Pool(origin, {
    connections: conns,
    keepAliveTimeout: 60_000,
    ...(socketPath ? { socketPath } : {}),
  });
  let ok = 0;
  let errors = 0;
  const lat: number[] = [];
  const until = Date.now() + ms;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conns }, async () => {
      while (Date.now() < until) {
        const t = performance.now();
        try {
          const r = await pool.request({ method: "GET", path });
          await r.body.text();
          if (r.statusCode === 200) ok++;
          else errors++;
          lat.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  lat.sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] : 0);
  await pool.close();
  const cpu = process.cpuUsage();
  const out: LoadResult = {
    ok,
    errors,
    rps: ok / secs,
    p50_ms: pct(0.5),
    p99_ms: pct(0.99),
    loadgen_cpu_us: (cpu.user + cpu.system) / Math.max(1, ok + errors),
  };
  process.stdout.write(JSON.stringify(out));
}

/** One load run; `containerPid` adds the container's CPU per request, the daemon's (this process) is always added. */
async function loadgen(origin: string, path: string, socketPath: string, containerPid: number): Promise<LoadResult> {
  const daemon0 = process.cpuUsage();
  const container0 = cgroupCpuNs(containerPid);
  const r = await runLoadgen(origin, path, socketPath);
  const daemon = process.cpuUsage(daemon0);
  const container1 = cgroupCpuNs(containerPid);
  const n = Math.max(1, r.ok + r.errors);
  r.daemon_cpu_us = (daemon.user + daemon.system) / n;
  if (container0 !== undefined && container1 !== undefined) r.container_cpu_us = (container1 - container0) / 1000 / n;
  return r;
}

function runLoadgen(origin: string, path: string, socketPath = ""): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [new URL(import.meta.url).pathname, "--loadgen", origin, path, socketPath, String(CONNECTIONS), String(DURATION)],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`loadgen exit ${code}`))));
  });
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log(`BENCH_JSON ${JSON.stringify({ bench: "container_proxy", skipped: "needs root + podman" })}`);
    return;
  }
  const home = mkdtempSync(join(tmpdir(), "hecate-cbench-"));
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  const router = new Router();
  const server = createHttpServer(router);
  const containers = new ContainerPlugins({ home, podman, router });
  try {
    const port = await listen(server, 0);
    const example = new URL("../../../../examples/container-echo", import.meta.url).pathname;
    const exampleManifest = JSON.parse(readFileSync(join(example, "manifest.json"), "utf8")) as PluginManifest;
    const install = (name: string, container: PluginManifest["container"]) => {
      const pkg = pluginPaths(home, name).package;
      mkdirSync(pkg, { recursive: true });
      cpSync(example, pkg, { recursive: true });
      execFileSync("chmod", ["-R", "a+rX", home]);
      const manifest: PluginManifest = { ...exampleManifest, name, container };
      return containers.load({ name, dir: pluginPaths(home, name).root, manifest });
    };
    const t0 = performance.now();
    await containers.start();
    await containers.ensureBaseImage();
    const tImage = performance.now();
    // Main case: the plugin may use a whole CPU, so it is not the bottleneck of the direct path.
    const loaded = await install("bench", { ...exampleManifest.container, cpus: 1 });
    const tLoad = performance.now();

    /** Alternating rounds (the order flips every round) after one warm-up of each path (JIT, pools). */
    const measure = async (name: string, c: LoadedContainer) => {
      const containerPid = (await podman.inspectContainer(c.containerId))?.State.Pid ?? 0;
      const runDirect = () => loadgen("http://plugin", "/hello", c.socketPath, containerPid);
      const runProxy = () => loadgen(`http://127.0.0.1:${port}`, `/plugin/${name}/api/hello`, "", containerPid);
      await runDirect();
      await runProxy();
      const directs: LoadResult[] = [];
      const proxies: LoadResult[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        if (round % 2 === 0) {
          directs.push(await runDirect());
          proxies.push(await runProxy());
        } else {
          proxies.push(await runProxy());
          directs.push(await runDirect());
        }
      }
      return { directs, proxies };
    };
    const med = (rs: LoadResult[], k: keyof LoadResult) => median(rs.map((r) => Number(r[k] ?? Number.NaN)));
    const main = await measure("bench", loaded);
    const { directs, proxies } = main;
    const direct = { rps: med(directs, "rps"), p99_ms: med(directs, "p99_ms") };
    const proxied = {
      rps: med(proxies, "rps"),
      p99_ms: med(proxies, "p99_ms"),
      errors: proxies.reduce((n, r) => n + r.errors, 0),
    };
    await containers.unload("bench");
    // Second case, for context: the example's own manifest limits (cpus 0.5, the default), where the plugin's CPU
    // quota rather than the proxy bounds both paths.
    const dflt = await measure("bench-default", await install("bench-default", exampleManifest.container));
    await containers.unload("bench-default");
    // Context: a bare node:http server in this process answering a same-sized JSON body (the ceiling of any
    // single-threaded Node hop on this machine).
    const bare = createServer((_req, res) => {
      const b = JSON.stringify({ hello: "from a container", uid: 200000 });
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(b) });
      res.end(b);
    });
    const barePort = await listen(bare, 0);
    const bareRes = await runLoadgen(`http://127.0.0.1:${barePort}`, "/hello");
    bare.close();
    const result = {
      bench: "container_proxy",
      connections: CONNECTIONS,
      rounds: ROUNDS,
      round_duration_ms: DURATION,
      cpus: availableParallelism(),
      loadavg_1m: +loadavg()[0].toFixed(2),
      plugin_cpus: 1,
      direct_rps: Math.round(direct.rps),
      direct_p99_ms: +direct.p99_ms.toFixed(2),
      proxy_rps: Math.round(proxied.rps),
      proxy_p99_ms: +proxied.p99_ms.toFixed(2),
      proxy_errors: proxied.errors,
      ratio_rps_proxy_vs_direct: +(proxied.rps / direct.rps).toFixed(3),
      bare_node_http_rps: Math.round(bareRes.rps),
      ratio_rps_proxy_vs_bare_node_http: +(proxied.rps / bareRes.rps).toFixed(3),
      ratio_p99_direct_vs_proxy: +(direct.p99_ms / proxied.p99_ms).toFixed(3),
      ratios_per_round: proxies.map((p, i) => +(p.rps / directs[i].rps).toFixed(3)),
      // CPU µs per request (medians over the rounds): where the time goes on each path.
      cpu_us_per_req: {
        direct: {
          loadgen: +med(directs, "loadgen_cpu_us").toFixed(1),
          container: +med(directs, "container_cpu_us").toFixed(1),
        },
        proxy: {
          loadgen: +med(proxies, "loadgen_cpu_us").toFixed(1),
          daemon: +med(proxies, "daemon_cpu_us").toFixed(1),
          container: +med(proxies, "container_cpu_us").toFixed(1),
        },
      },
      default_limits: {
        plugin_cpus: exampleManifest.container?.cpus,
        direct_rps: Math.round(med(dflt.directs, "rps")),
        direct_p99_ms: +med(dflt.directs, "p99_ms").toFixed(2),
        proxy_rps: Math.round(med(dflt.proxies, "rps")),
        proxy_p99_ms: +med(dflt.proxies, "p99_ms").toFixed(2),
        daemon_cpu_us_per_req: +med(dflt.proxies, "daemon_cpu_us").toFixed(1),
      },
      ratio_rps_proxy_vs_direct_default_limits: +(med(dflt.proxies, "rps") / med(dflt.directs, "rps")).toFixed(3),
      base_image_ready_ms: Math.round(tImage - t0),
      load_to_healthy_ms: Math.round(tLoad - tImage),
      goal: "ratio_rps_proxy_vs_direct >= 0.5",
    };
    console.log(
      `container proxy: direct ${result.direct_rps} req/s (p99 ${result.direct_p99_ms} ms), through daemon ${result.proxy_rps} req/s (p99 ${result.proxy_p99_ms} ms), ratio ${result.ratio_rps_proxy_vs_direct}; daemon ${result.cpu_us_per_req.proxy.daemon} us CPU/request`,
    );
    console.log(`BENCH_JSON ${JSON.stringify(result)}`);
  } finally {
    await containers.close();
    server.close();
    server.closeAllConnections();
    await podman.stopService();
    await podman.close();
    rmSync(home, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--loadgen") {
  const [origin, path, socketPath, conns, ms] = process.argv.slice(3);
  await loadgenMain(origin, path, socketPath, Number(conns), Number(ms));
} else {
  await main();
}
