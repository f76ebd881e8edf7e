/**
 * Cluster-singleton jobs: three daemons (main.js children) on one real PostgreSQL run a plugin whose job ticks every
 * 250 ms with `singleton: true` (lease 3 s) and records each run as an event in its shared store (with the node that
 * ran it). Steady state: one node runs every tick, the others count theirs as `elsewhere`. kill -9 of the holder:
 * another node runs the job once the lease expired (within the lease time plus a tick). SIGTERM of the next holder:
 * it gives the lease back at unload, so the third node takes over at its next tick, long before an expiry. The
 * plugin hosts do not inherit HECATE_STORE_URL from the daemons' environment. A singleton job created at the module's
 * top level with runImmediately (before the host set the config) runs once in the cluster.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openEventStore } from "@hecate/store";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import { buildPackage, type ChildDaemon, spawnDaemon, until } from "../lifecycle/helpers.js";

const INTERVAL_MS = 250;
const LEASE_MS = 3000;

const TICKER = {
  name: "ticker",
  version: "1.0.0",
  extra: `import { getConfig, scheduler, store } from "@hecate/sdk";
export function storeConfig() { return {}; }
let job;
// created while the module is imported, before the host set the config: its first tick waits for it
scheduler.every(600000, () => store.eventStore().append("boot-1", [{ type: "boot_v1", data: { node: getConfig().cluster.nodeId } }]),
  { name: "boot", singleton: true, runImmediately: true });`,
  init: `job = scheduler.every(${INTERVAL_MS}, async () => {
    await store.eventStore().append("ticks-1", [{ type: "tick_v1", data: { node: getConfig().cluster.nodeId, at: Date.now() } }]);
  }, { name: "tick", singleton: true, leaseMs: ${LEASE_MS} });`,
  routes: `{ method: "GET", path: "/stats", handler: () => job.stats },
    { method: "GET", path: "/env", handler: () => ({ storeUrl: process.env.HECATE_STORE_URL ?? null }) },`,
};

let server: PgServer;
let work: string;
const children = new Map<string, ChildDaemon>();

before(async () => {
  work = mkdtempSync(join(tmpdir(), "hecate-cluster-singleton-"));
  server = await startPostgres();
});
after(async () => {
  for (const ch of children.values())
    if (ch.child.exitCode === null && ch.child.signalCode === null) ch.child.kill("SIGKILL");
  await Promise.all([...children.values()].map((ch) => ch.exited));
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

interface Tick {
  node: string;
  at: number;
}

async function ticks(type = "tick_v1"): Promise<Tick[]> {
  const store = openEventStore({ url: server.url, storeId: "plugin.ticker" });
  try {
    return (await store.readAll({ types: [type] })).map((e) => e.data as Tick);
  } finally {
    await store.close();
  }
}

/** The first tick after `since` run by a node other than `not`. */
async function firstTickBy(since: number, not: string[], timeoutMs: number): Promise<Tick> {
  return (await until(
    async () => (await ticks()).find((t) => t.at > since && !not.includes(t.node)),
    timeoutMs,
    `a tick by a node other than ${not.join(", ")}`,
  )) as Tick;
}

test("a singleton job runs on one of 3 nodes per tick; kill -9 of the holder: another node within the lease time; a stopped holder hands over at once", async (t) => {
  for (const id of ["a", "b", "c"])
    children.set(id, spawnDaemon(join(work, `home-${id}`), { HECATE_STORE_URL: server.url, HECATE_NODE_ID: id }));
  const urls = new Map<string, string>();
  for (const [id, ch] of children) urls.set(id, await ch.url);
  const a = children.get("a")!;
  const adminA = await until(() => /hecate admin on (\S+)/.exec(a.output())?.[1] ?? "", 5000, "admin url");
  const token = readFileSync(join(work, "home-a", "run", "admin.token"), "utf8").trim();
  const r = await fetch(`${adminA}/admin/api/plugins`, {
    method: "POST",
    body: readFileSync(await buildPackage(work, TICKER)),
    headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.clone().text());
  const stats = async (id: string) =>
    (await (await fetch(`${urls.get(id)}/plugin/ticker/api/stats`)).json()) as { runs: number; elsewhere: number };
  await until(
    async () =>
      (await Promise.all([...urls.values()].map((u) => fetch(`${u}/plugin/ticker/api/stats`)))).every((x) => x.ok),
    10_000,
    "ticker loaded on 3 nodes",
  );

  // the daemons run with HECATE_STORE_URL; their plugin hosts (plugin code) do not see it: the store URL comes in the
  // plugin's config, where the SDK keeps the password
  assert.deepEqual(await (await fetch(`${urls.get("a")}/plugin/ticker/api/env`)).json(), { storeUrl: null });

  // steady state: over 2 s, every tick was run by one node (about 2000 / 250 runs, not three times as many)
  const from = Date.now();
  await new Promise((res) => setTimeout(res, 2000));
  const steady = (await ticks()).filter((x) => x.at > from && x.at <= from + 2000);
  const holders = [...new Set(steady.map((x) => x.node))];
  t.diagnostic(`steady 2 s: ${steady.length} runs, by ${holders.join(", ")}`);
  assert.equal(holders.length, 1, `runs by ${holders.join(", ")}`);
  assert.ok(steady.length >= 5 && steady.length <= 10, `${steady.length} runs in 2 s`);
  const holder = holders[0];
  // the job started at import time with runImmediately ran once in the cluster, not once per node
  const boots = await ticks("boot_v1");
  assert.equal(boots.length, 1, JSON.stringify(boots));
  const others = ["a", "b", "c"].filter((id) => id !== holder);
  for (const id of others) {
    const s = await stats(id);
    assert.equal(s.runs, 0, `${id} ran the job`);
    assert.ok(s.elsewhere > 0, `${id}: ${JSON.stringify(s)}`);
  }

  // kill -9 of the holder: its lease expires, the first other node to tick after that runs the job
  const killedAt = Date.now();
  children.get(holder)!.child.kill("SIGKILL");
  await children.get(holder)!.exited;
  const next = await firstTickBy(killedAt, [holder], LEASE_MS + 5000);
  const takeover = next.at - killedAt;
  t.diagnostic(`kill -9 of ${holder}: ${next.node} ran the job ${takeover} ms later (lease ${LEASE_MS} ms)`);
  assert.ok(takeover <= LEASE_MS + INTERVAL_MS + 750, `takeover after ${takeover} ms`);
  await new Promise((res) => setTimeout(res, 1000));
  const afterKill = (await ticks()).filter((x) => x.at >= next.at);
  assert.deepEqual([...new Set(afterKill.map((x) => x.node))], [next.node], "one node runs it after the takeover");

  // SIGTERM of the new holder: the job stops at unload and gives its lease back; the last node takes over at once
  const last = others.find((id) => id !== next.node)!;
  const stopping = children.get(next.node)!;
  stopping.child.kill("SIGTERM");
  assert.equal((await stopping.exited).code, 0);
  const exitedAt = Date.now();
  const third = await firstTickBy(0, [holder, next.node], LEASE_MS + 5000);
  assert.equal(third.node, last);
  const handover = third.at - exitedAt;
  t.diagnostic(`SIGTERM of ${next.node}: ${last} ran the job ${handover} ms after it exited`);
  assert.ok(handover < 1000, `handover ${handover} ms after the exit (the lease was not given back?)`);
});
