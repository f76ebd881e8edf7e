/** Cluster tests: daemons on one real PostgreSQL (started by the test), each with its own home and node id. */
import { join } from "node:path";
import { openEventStore } from "@hecate/store";
import { startTestDaemon, type TestDaemon, until } from "../lifecycle/helpers.js";

export async function startNode(dir: string, storeUrl: string, nodeId: string): Promise<TestDaemon> {
  return startTestDaemon({ home: join(dir, `home-${nodeId}`), storeUrl, nodeId });
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
