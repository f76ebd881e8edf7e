/** Cluster tests: daemons on one real PostgreSQL (started by the test), each with its own home and node id. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { openEventStore } from "@hecate/store";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import type { DaemonOptions } from "../../src/daemon.js";
import { startTestDaemon, type TestDaemon, until } from "../lifecycle/helpers.js";

export interface ClusterFixture {
  readonly server: PgServer;
  readonly work: string;
  /** Nodes started with `start` (stopped after the file's tests). */
  readonly nodes: TestDaemon[];
  start(nodeId: string, opts?: Partial<DaemonOptions>): Promise<TestDaemon>;
  /** Stops a node started with `start` (and forgets it). */
  stop(node: TestDaemon): Promise<void>;
}

/** A real PostgreSQL and a temp dir for this test file (before / after hooks); nodes started through it are stopped. */
export function useCluster(prefix: string): ClusterFixture {
  const f = { nodes: [] as TestDaemon[] } as { server: PgServer; work: string; nodes: TestDaemon[] } & ClusterFixture;
  f.start = async (nodeId, opts) => {
    const d = await startNode(f.work, f.server.url, nodeId, opts);
    f.nodes.push(d);
    return d;
  };
  f.stop = async (node) => {
    f.nodes.splice(f.nodes.indexOf(node), 1);
    await node.stop();
  };
  before(async () => {
    f.work = mkdtempSync(join(tmpdir(), `hecate-${prefix}-`));
    f.server = await startPostgres();
  });
  after(async () => {
    await Promise.all(f.nodes.map((n) => n.stop().catch(() => {})));
    await f.server?.stop();
    rmSync(f.work, { recursive: true, force: true });
  });
  return f;
}

export async function startNode(
  dir: string,
  storeUrl: string,
  nodeId: string,
  opts: Partial<DaemonOptions> = {},
): Promise<TestDaemon> {
  return startTestDaemon({ home: join(dir, `home-${nodeId}`), storeUrl, nodeId, ...opts });
}

/** The `/who` answer's version of `plugin` on this node's plugin listener, or null when it does not answer 200. */
export async function servedVersion(d: { url: string }, plugin: string): Promise<string | null> {
  const r = await fetch(`${d.url}/plugin/${plugin}/api/who`);
  if (r.status !== 200) {
    await r.body?.cancel();
    return null;
  }
  return ((await r.json()) as { version: string }).version;
}

/** Resolves once every node serves `version` of `plugin` (null: once none serves it); returns the ms it took. */
export async function untilServed(
  nodes: { url: string }[],
  plugin: string,
  version: string | null,
  timeoutMs = 20_000,
): Promise<number> {
  const t0 = performance.now();
  await until(
    async () => (await Promise.all(nodes.map((n) => servedVersion(n, plugin)))).every((v) => v === version),
    timeoutMs,
    `${plugin} ${version ?? "gone"} on ${nodes.length} nodes`,
  );
  return performance.now() - t0;
}

/** Event types of a plugin's shared stream, read straight from PostgreSQL. */
export async function sharedTypes(storeUrl: string, plugin: string): Promise<string[]> {
  const store = openEventStore({ url: storeUrl, storeId: "plugins" });
  try {
    return (await store.readStream(`plugin-${plugin}`)).map((e) => e.type);
  } finally {
    await store.close();
  }
}

export function count(types: string[], type: string): number {
  return types.filter((t) => t === type).length;
}
