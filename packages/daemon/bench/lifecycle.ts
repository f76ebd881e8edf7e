/**
 * Lifecycle bench: what the event-sourced lifecycle costs on top of the raw steps, measured in the same run.
 *  - install -> LOADED through the admin API (upload, plugin_installed_v1, extraction, activation, load, confirm;
 *    synchronous=FULL appends) vs the raw path: extractPackage + WorkerPlugins.load of the same package;
 *  - upgrade (extract + warm worker + route swap + drain) through the admin API;
 *  - /health latency while installs run.
 * Prints `BENCH_JSON {...}` last.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { extractPackage, packPlugin } from "@hecate/package";
import { type PluginConfig, pluginPaths } from "@hecate/sdk";
import { startDaemon } from "../src/daemon.js";
import { Router } from "../src/http/router.js";
import { WorkerPlugins } from "../src/worker/worker-plugins.js";

const ROUNDS = Number(process.env.BENCH_LIFECYCLE_ROUNDS ?? 20);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.99))];

async function pack(work: string, name: string, version: string): Promise<string> {
  const src = join(work, `src-${version}`);
  const files: Record<string, string> = {
    "manifest.json": JSON.stringify({ name, version }),
    "dist/index.js": `export function manifest() { return { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }; }
export function init() {}
export function routes() { return [{ method: "GET", path: "/who", handler: () => ({ version: ${JSON.stringify(version)} }) }]; }`,
    "priv/static/index.html": "<h1>bench</h1>",
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(src, rel)), { recursive: true });
    writeFileSync(join(src, rel), content);
  }
  const out = join(work, `${name}-${version}.tar.gz`);
  await packPlugin(src, out);
  return out;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "hecate-bench-lc-"));
  const v1 = await pack(work, "benchy", "1.0.0");
  const v2 = await pack(work, "benchy", "2.0.0");

  // Raw path: extraction + worker load, no events, no HTTP.
  const rawHome = join(work, "raw");
  const rawWorkers = new WorkerPlugins({ router: new Router(), home: rawHome });
  const raw: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const p = pluginPaths(rawHome, "benchy");
    const t = performance.now();
    await extractPackage(v1, p.package, { expectedName: "benchy" });
    for (const d of [p.data, p.tmp]) mkdirSync(d, { recursive: true });
    const config: PluginConfig = {
      pluginName: "benchy",
      pluginVersion: "1.0.0",
      storeId: null,
      dataDir: p.data,
      paths: p,
      apiPrefix: "/plugin/benchy/api",
      staticPrefix: "/plugin/benchy",
      settings: {},
      standalone: false,
    };
    await rawWorkers.load({
      name: "benchy",
      version: "1.0.0",
      root: p.root,
      entry: join(p.code, "index.js"),
      staticDir: p.static,
      config,
    });
    raw.push(performance.now() - t);
    await rawWorkers.unload("benchy");
    rmSync(p.root, { recursive: true, force: true });
  }
  await rawWorkers.close();

  const d = await startDaemon({ home: join(work, "home"), port: 0, logLevel: "silent", containers: false });
  const auth = { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" };
  const body1 = readFileSync(v1);
  const body2 = readFileSync(v2);
  const install: number[] = [];
  const upgrade: number[] = [];
  const health: number[] = [];
  let probing = true;
  const prober = (async () => {
    while (probing) {
      const t = performance.now();
      await (await fetch(`${d.url}/health`)).arrayBuffer();
      health.push(performance.now() - t);
      // A probe every ~2 ms: a monitor, not a load test competing with the installs for the main thread.
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  for (let i = 0; i < ROUNDS; i++) {
    let t = performance.now();
    const r = await fetch(`${d.adminUrl}/admin/api/plugins`, { method: "POST", headers: auth, body: body1 });
    if (r.status !== 201) throw new Error(`install failed: ${r.status} ${await r.text()}`);
    install.push(performance.now() - t);
    t = performance.now();
    const u = await fetch(`${d.adminUrl}/admin/api/plugins/benchy/upgrade`, {
      method: "POST",
      headers: auth,
      body: body2,
    });
    if (u.status !== 200) throw new Error(`upgrade failed: ${u.status} ${await u.text()}`);
    upgrade.push(performance.now() - t);
    await (
      await fetch(`${d.adminUrl}/admin/api/plugins/benchy?purge=1`, { method: "DELETE", headers: auth })
    ).arrayBuffer();
  }
  probing = false;
  await prober;
  await d.close();
  rmSync(work, { recursive: true, force: true });

  const result = {
    rounds: ROUNDS,
    install_to_loaded_ms_p50: +median(install).toFixed(1),
    raw_extract_and_load_ms_p50: +median(raw).toFixed(1),
    ratio_raw_vs_lifecycle_install: +(median(raw) / median(install)).toFixed(3),
    upgrade_ms_p50: +median(upgrade).toFixed(1),
    health_during_lifecycle_ms_p50: +median(health).toFixed(2),
    health_during_lifecycle_ms_p99: +p99(health).toFixed(2),
    health_samples: health.length,
  };
  console.log(
    `install->LOADED p50 ${result.install_to_loaded_ms_p50} ms (raw extract+load ${result.raw_extract_and_load_ms_p50} ms), ` +
      `upgrade p50 ${result.upgrade_ms_p50} ms, /health p99 ${result.health_during_lifecycle_ms_p99} ms`,
  );
  console.log(`BENCH_JSON ${JSON.stringify({ bench: "lifecycle", ...result })}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
