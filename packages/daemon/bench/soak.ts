/**
 * Soak: sustained mixed traffic (JSON GET, 16 KiB POST echo checked byte for byte, static file with ETag, expected
 * 404s) to several steady plugins while other plugins are installed and removed in a loop and one steady plugin is
 * upgraded v1 <-> v2. Counts every unexpected status / network error and samples the process's RSS and heap.
 * mode "daemon" (default): the whole daemon (startDaemon) with real packages through the admin API (install ?wait=loaded,
 * upgrade, DELETE ?purge=1); mode "runtime": WorkerPlugins load/unload/swap only.
 *
 *   node dist/bench/soak.js   (SOAK_DURATION_MS, default 60000; SOAK_CLIENTS, default 16; SOAK_MODE daemon|runtime)
 *
 * `runSoak` is also what test/hardening/soak.test.ts runs for a few seconds. Prints `BENCH_JSON {...}` when run
 * as a script: a stability run, so its numbers are errors and memory growth, not a throughput claim.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pluginPaths, standaloneConfig } from "@hecate/sdk";
import { Pool } from "undici";
import { startDaemon } from "../src/daemon.js";
import { Router } from "../src/http/router.js";
import { createHttpServer, listen } from "../src/http/server.js";
import { type PluginSpec, WorkerPlugins } from "../src/worker/worker-plugins.js";
import { buildPackage, unixRequest } from "../test/lifecycle/helpers.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

export interface SoakOptions {
  durationMs: number;
  clients: number;
  steadyPlugins?: number;
  churnPlugins?: number;
  mode?: "daemon" | "runtime";
}

/** What the churn loop drives: plugins come and go, one is upgraded, traffic goes to `base`. */
interface Target {
  base: string;
  add(name: string, version: string): Promise<void>;
  drop(name: string): Promise<void>;
  upgrade(name: string, version: string): Promise<void>;
  close(): Promise<void>;
}

export interface SoakResult {
  mode: string;
  duration_ms: number;
  clients: number;
  requests: number;
  rps: number;
  errors: number;
  error_samples: string[];
  by_kind: Record<string, number>;
  churn_cycles: number;
  swaps: number;
  p99_ms: number;
  rss_mib_warm: number;
  rss_mib_end: number;
  rss_growth_mib: number;
  heap_mib_warm: number;
  heap_mib_end: number;
  heap_growth_mib: number;
}

// Besides GET /who -> {name, version}: the echo and param routes the traffic uses.
const EXTRA_ROUTES = `
    { method: "POST", path: "/echo", handler: async (req) => ({ headers: { "content-type": "application/octet-stream" }, body: await req.bytes() }) },
    { method: "GET", path: "/items/:id", handler: (req) => ({ id: req.params.id, q: req.query }) },`;

function source(name: string, version: string): string {
  return `
export function manifest() { return { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }; }
export function init() {}
export function routes() {
  return [
    { method: "GET", path: "/who", handler: () => ({ name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }) },${EXTRA_ROUTES}
  ];
}
`;
}

const staticBody = (name: string) => `console.log(${JSON.stringify(name)});\n`.repeat(200);

function writeSpec(home: string, name: string, version: string): PluginSpec {
  const paths = pluginPaths(home, name);
  const dir = join(paths.root, `dist-${version}`);
  mkdirSync(dir, { recursive: true });
  mkdirSync(paths.static, { recursive: true });
  writeFileSync(join(paths.static, "app.js"), staticBody(name));
  const entry = join(dir, "index.js");
  writeFileSync(entry, source(name, version));
  const config = standaloneConfig(name, { paths, pluginVersion: version, standalone: false, storeId: null });
  return { name, version, root: paths.root, entry, staticDir: paths.static, config };
}

const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
function memory(): { rss: number; heap: number } {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heap: m.heapUsed };
}

export async function runSoak(opts: SoakOptions): Promise<SoakResult> {
  const steadyCount = opts.steadyPlugins ?? 3;
  const churnCount = opts.churnPlugins ?? 2;
  const mode = opts.mode ?? "daemon";
  const home = mkdtempSync(join(tmpdir(), "hecate-soak-"));
  const steady = Array.from({ length: steadyCount }, (_, i) => `steady-${i}`);
  const churn = Array.from({ length: churnCount }, (_, i) => `churn-${i}`);
  const target = mode === "daemon" ? await daemonTarget(home, [...steady, ...churn]) : await runtimeTarget(home);
  const pool = new Pool(target.base, { connections: opts.clients, keepAliveTimeout: 30_000 });
  try {
    for (const name of steady) await target.add(name, "1.0.0");

    let requests = 0;
    let errors = 0;
    const errorSamples: string[] = [];
    const byKind: Record<string, number> = {};
    const latencies: number[] = [];
    const fail = (what: string) => {
      errors++;
      if (errorSamples.length < 20) errorSamples.push(what);
    };
    const payload = randomBytes(16 * 1024);
    const staticBytes = Buffer.byteLength(staticBody(steady[0])); // same length for every steady-N
    let stop = false;
    const etags = new Map<string, string>();

    // One request of a random kind; checks status and content, records latency.
    const one = async (n: number) => {
      const plugin = steady[Math.floor(n / 6) % steady.length]; // kinds cycle fastest, so every plugin gets each
      const kind = ["json", "echo", "static", "param", "missing", "churn"][n % 6];
      byKind[kind] = (byKind[kind] ?? 0) + 1;
      const t0 = performance.now();
      try {
        if (kind === "json") {
          const r = await pool.request({ method: "GET", path: `/plugin/${plugin}/api/who` });
          const b = (await r.body.json()) as { name: string };
          if (r.statusCode !== 200 || b.name !== plugin) fail(`${kind} ${r.statusCode} ${JSON.stringify(b)}`);
        } else if (kind === "echo") {
          const r = await pool.request({
            method: "POST",
            path: `/plugin/${plugin}/api/echo`,
            body: payload,
            headers: { "content-type": "application/json" }, // plugin routes take JSON-typed bodies only (CSRF rule)
          });
          const b = Buffer.from(await r.body.arrayBuffer());
          if (r.statusCode !== 200 || !b.equals(payload)) fail(`${kind} ${r.statusCode} ${b.length} bytes`);
        } else if (kind === "static") {
          // Every other static request revalidates with the ETag of the previous one (304 path).
          const known = etags.get(plugin);
          const headers: Record<string, string> = known && n % 12 === 2 ? { "if-none-match": known } : {};
          const r = await pool.request({ method: "GET", path: `/plugin/${plugin}/app.js`, headers });
          const b = Buffer.from(await r.body.arrayBuffer());
          // A revalidation answers 304, or 200 with the whole file when an upgrade replaced it (new ETag).
          if (
            !(r.statusCode === 200 && b.length === staticBytes) &&
            !(headers["if-none-match"] && r.statusCode === 304)
          )
            fail(`${kind} ${r.statusCode} ${b.length} bytes`);
          if (r.statusCode === 200) etags.set(plugin, String(r.headers.etag));
        } else if (kind === "param") {
          const r = await pool.request({ method: "GET", path: `/plugin/${plugin}/api/items/${n}?x=${n}` });
          const b = (await r.body.json()) as { id: string };
          if (r.statusCode !== 200 || b.id !== String(n)) fail(`${kind} ${r.statusCode}`);
        } else if (kind === "missing") {
          const r = await pool.request({ method: "GET", path: `/plugin/${plugin}/api/nope` });
          await r.body.dump();
          if (r.statusCode !== 404) fail(`${kind} ${r.statusCode}`);
        } else {
          // A plugin that comes and goes: answered (200) or cleanly absent (404 / 503 while unmounting).
          const c = churn[Math.floor(n / 6) % churn.length];
          const r = await pool.request({ method: "GET", path: `/plugin/${c}/api/who` });
          await r.body.dump();
          if (r.statusCode !== 200 && r.statusCode !== 404 && r.statusCode !== 503) fail(`${kind} ${r.statusCode}`);
        }
      } catch (err) {
        fail(`${kind} ${(err as Error).message}`);
      }
      latencies.push(performance.now() - t0);
      requests++;
    };
    let counter = 0;
    const client = async () => {
      while (!stop) await one(counter++);
    };

    let churnCycles = 0;
    let swaps = 0;
    const churner = async () => {
      while (!stop) {
        for (const name of churn) await target.add(name, churnCycles % 2 ? "2.0.0" : "1.0.0");
        for (const name of churn) await target.drop(name);
        await target.upgrade(steady[0], swaps % 2 ? "1.0.0" : "2.0.0");
        swaps++;
        churnCycles++;
      }
    };

    const started = performance.now();
    const clients = Array.from({ length: opts.clients }, client);
    const churning = churner();
    // Warm-up: the first quarter (at most 5 s) fills the caches, pools and V8 heaps; growth is measured after it.
    await new Promise((r) => setTimeout(r, Math.min(5000, opts.durationMs / 4)));
    const warm = memory();
    await new Promise((r) => setTimeout(r, opts.durationMs - (performance.now() - started)));
    stop = true;
    await Promise.all([...clients, churning]);
    const seconds = (performance.now() - started) / 1000;
    const end = memory();
    latencies.sort((a, b) => a - b);
    return {
      mode,
      duration_ms: Math.round(seconds * 1000),
      clients: opts.clients,
      requests,
      rps: Math.round(requests / seconds),
      errors,
      error_samples: errorSamples,
      by_kind: byKind,
      churn_cycles: churnCycles,
      swaps,
      p99_ms: Math.round((latencies[Math.floor(latencies.length * 0.99)] ?? 0) * 10) / 10,
      rss_mib_warm: mib(warm.rss),
      rss_mib_end: mib(end.rss),
      rss_growth_mib: mib(end.rss - warm.rss),
      heap_mib_warm: mib(warm.heap),
      heap_mib_end: mib(end.heap),
      heap_growth_mib: mib(end.heap - warm.heap),
    };
  } finally {
    await pool.close();
    await target.close();
    rmSync(home, { recursive: true, force: true });
  }
}

async function runtimeTarget(home: string): Promise<Target> {
  const router = new Router();
  const server = createHttpServer(router);
  const port = await listen(server);
  const workers = new WorkerPlugins({ router, home });
  const specs = new Map<string, PluginSpec>();
  const spec = (name: string, version: string) => {
    const key = `${name}@${version}`;
    if (!specs.has(key)) specs.set(key, writeSpec(home, name, version));
    return specs.get(key)!;
  };
  return {
    base: `http://127.0.0.1:${port}`,
    add: async (name, version) => void (await workers.load(spec(name, version))),
    drop: async (name) => void (await workers.unload(name, { deadlineMs: 2000 })),
    upgrade: async (name, version) => void (await workers.swap(name, spec(name, version), { deadlineMs: 2000 })),
    async close() {
      await workers.close(1000);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** The whole daemon; plugins are real packages installed, upgraded and removed through the admin API. */
async function daemonTarget(home: string, names: string[]): Promise<Target> {
  const work = join(home, "packages");
  mkdirSync(work, { recursive: true });
  const archives = new Map<string, Buffer>();
  for (const name of names)
    for (const version of ["1.0.0", "2.0.0"]) {
      const file = await buildPackage(work, {
        name,
        version,
        routes: EXTRA_ROUTES,
        files: { "priv/static/app.js": staticBody(name) },
      });
      archives.set(`${name}@${version}`, readFileSync(file));
    }
  const daemon = await startDaemon({
    home: join(home, "home"),
    port: 0,
    logLevel: "silent",
    containers: false,
    trustOwnProcessOnSocket: true,
  });
  const admin = async (method: string, path: string, body?: Buffer) => {
    const r = await unixRequest(
      daemon.socketPath,
      method,
      path,
      body,
      body ? { "content-type": "application/gzip" } : {},
    );
    if (r.status >= 300) throw new Error(`${method} ${path} -> ${r.status} ${r.body}`);
  };
  return {
    base: daemon.url,
    add: (name, version) => admin("POST", "/admin/api/plugins?wait=loaded", archives.get(`${name}@${version}`)),
    drop: (name) => admin("DELETE", `/admin/api/plugins/${name}?purge=1`),
    upgrade: (name, version) => admin("POST", `/admin/api/plugins/${name}/upgrade`, archives.get(`${name}@${version}`)),
    close: () => daemon.close(),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const result = await runSoak({
    durationMs: Number(process.env.SOAK_DURATION_MS ?? 60_000),
    clients: Number(process.env.SOAK_CLIENTS ?? 16),
    mode: process.env.SOAK_MODE === "runtime" ? "runtime" : "daemon",
  });
  console.log(
    `soak (${result.mode}): ${result.requests} requests in ${result.duration_ms} ms (${result.rps} req/s), ${result.errors} errors, ${result.churn_cycles} churn cycles, ${result.swaps} swaps, rss ${result.rss_mib_warm} -> ${result.rss_mib_end} MiB, heap ${result.heap_mib_warm} -> ${result.heap_mib_end} MiB`,
  );
  console.log(`BENCH_JSON ${JSON.stringify({ bench: "daemon-soak", ...result })}`);
}
