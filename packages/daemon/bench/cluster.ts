/**
 * Cluster rollout bench (real PostgreSQL started here): an upgrade through one node's admin API until every node
 * serves the new version, p50 over the rounds, for 3 nodes on one database vs 1 node on a database of its own
 * (the baseline, same run: the same upload, extraction and swap, without the fan-out).
 * Prints `BENCH_JSON {...}` last.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { packPlugin } from "@hecate/package";
import { startPostgres } from "@hecate/store/testing/postgres";
import { type Daemon, startDaemon } from "../src/daemon.js";

const ROUNDS = Number(process.env.BENCH_CLUSTER_ROUNDS ?? 10);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

async function pack(work: string, version: string): Promise<Buffer> {
  const src = join(work, `src-${version}`);
  const files: Record<string, string> = {
    "manifest.json": JSON.stringify({ name: "rollout", version }),
    "dist/index.js": `export function manifest() { return { name: "rollout", version: ${JSON.stringify(version)} }; }
export function init() {}
export function routes() { return [{ method: "GET", path: "/who", handler: () => ({ version: ${JSON.stringify(version)} }) }]; }`,
  };
  for (const [rel, content] of Object.entries(files)) {
    mkdirSync(dirname(join(src, rel)), { recursive: true });
    writeFileSync(join(src, rel), content);
  }
  const out = join(work, `rollout-${version}.tar.gz`);
  await packPlugin(src, out);
  return readFileSync(out);
}

async function served(d: Daemon, version: string): Promise<boolean> {
  const r = await fetch(`${d.url}/plugin/rollout/api/who`);
  if (r.status !== 200) {
    await r.arrayBuffer();
    return false;
  }
  return ((await r.json()) as { version: string }).version === version;
}

/** Installs v0, then ROUNDS upgrades (through node i % n) each timed until every node serves it. */
async function rollouts(nodes: Daemon[], bodies: Buffer[]): Promise<number[]> {
  const post = (d: Daemon, path: string, body: Buffer) =>
    fetch(`${d.adminUrl}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
      body,
    });
  const first = await post(nodes[0], "/admin/api/plugins", bodies[0]);
  if (first.status !== 201) throw new Error(`install: ${first.status} ${await first.text()}`);
  const times: number[] = [];
  for (let i = 1; i <= ROUNDS; i++) {
    const version = `1.0.${i}`;
    const t = performance.now();
    const r = await post(nodes[i % nodes.length], "/admin/api/plugins/rollout/upgrade", bodies[i]);
    if (r.status !== 200) throw new Error(`upgrade: ${r.status} ${await r.text()}`);
    for (;;) {
      if ((await Promise.all(nodes.map((n) => served(n, version)))).every(Boolean)) break;
      if (performance.now() - t > 30_000) throw new Error(`${version} not served by every node within 30 s`);
      await new Promise((res) => setTimeout(res, 5));
    }
    times.push(performance.now() - t);
  }
  return times;
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "hecate-bench-cluster-"));
  const bodies = await Promise.all(Array.from({ length: ROUNDS + 1 }, (_, i) => pack(work, `1.0.${i}`)));
  const [solo, shared] = await Promise.all([startPostgres(), startPostgres()]);
  const start = (url: string, id: string) =>
    startDaemon({
      home: join(work, `home-${id}`),
      port: 0,
      logLevel: "silent",
      containers: false,
      storeUrl: url,
      nodeId: id,
    });
  try {
    const one = [await start(solo.url, "solo")];
    const single = await rollouts(one, bodies);
    await Promise.all(one.map((d) => d.close()));
    const three = await Promise.all(["a", "b", "c"].map((id) => start(shared.url, id)));
    const cluster = await rollouts(three, bodies);
    await Promise.all(three.map((d) => d.close()));
    const result = {
      rounds: ROUNDS,
      rollout_3_nodes_ms_p50: +median(cluster).toFixed(1),
      upgrade_1_node_ms_p50: +median(single).toFixed(1),
      ratio_1_node_vs_3_node_rollout: +(median(single) / median(cluster)).toFixed(3),
    };
    console.log(
      `upgrade served by every node: 3 nodes p50 ${result.rollout_3_nodes_ms_p50} ms, 1 node p50 ${result.upgrade_1_node_ms_p50} ms`,
    );
    console.log(`BENCH_JSON ${JSON.stringify({ bench: "cluster-rollout", ...result })}`);
  } finally {
    await Promise.all([solo.stop(), shared.stop()]);
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
