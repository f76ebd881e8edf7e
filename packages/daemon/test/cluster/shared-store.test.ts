/**
 * Cluster mode, plugin stores: three daemons on one real PostgreSQL share every in-process plugin's event store
 * (`plugin.{name}`), while each keeps its read models in its own SQLite files. The taskboard example installed
 * through A: a task created through A's plugin API is readable on A at once (strong consistency) and on B and C
 * within 2 s (measured); a node that was down catches its read model up at restart; a purge through B deletes the
 * shared store. A small plugin shows that a named subscription keeps one checkpoint per node, and that the database
 * password (the nodes run with one; trust auth ignores it) reaches neither the plugin's config nor a log or an answer.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { pluginPaths } from "@hecate/sdk";
import pg from "pg";
import { buildPackage, type TestDaemon, until } from "../lifecycle/helpers.js";
import { startNode, useCluster } from "./helpers.js";

const cluster = useCluster("cluster-store");
const PASSWORD = "sup3r-s3cret-pw";
const gzip = { "content-type": "application/gzip" };
const json = { "content-type": "application/json" };
const TASKBOARD_PACK = fileURLToPath(new URL("../../../../../examples/taskboard/scripts/pack.mjs", import.meta.url));

/** The nodes connect with a password in the URL (the test server's trust auth accepts any). */
async function node(id: string): Promise<TestDaemon> {
  const d = await startNode(cluster.work, cluster.server.url.replace("hecate@", `hecate:${PASSWORD}@`), id);
  cluster.nodes.push(d);
  byId.set(id, d);
  return d;
}
/** The running node of each id (the first test leaves a, b and a restarted c to the second). */
const byId = new Map<string, TestDaemon>();

async function sql<R extends pg.QueryResultRow>(text: string, params: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: cluster.server.url });
  await c.connect();
  try {
    return (await c.query<R>(text, params)).rows;
  } finally {
    await c.end();
  }
}

/** Resolves with the ms until GET `path` of the plugin's API answers 200 on `d`. */
async function untilVisible(d: TestDaemon, path: string, timeoutMs = 5000): Promise<number> {
  const t0 = performance.now();
  await until(
    async () => {
      const r = await fetch(`${d.url}/plugin/taskboard/api${path}`);
      await r.body?.cancel();
      return r.status === 200;
    },
    timeoutMs,
    `${path} on ${d.url}`,
  );
  return performance.now() - t0;
}

async function createTask(d: TestDaemon, title: string): Promise<string> {
  const r = await fetch(`${d.url}/plugin/taskboard/api/boards/main/tasks`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ title }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return ((await r.json()) as { id: string }).id;
}

test("taskboard on 3 nodes: a task created on A is read on A at once and on B and C within 2 s; a restarted node catches up; a purge deletes the shared store", async (t) => {
  const [a, b, c] = await Promise.all(["a", "b", "c"].map(node));
  const archive = join(cluster.work, "taskboard.tar.gz");
  execFileSync(process.execPath, [TASKBOARD_PACK, archive], { stdio: "pipe" });
  const r = await a.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gzip });
  assert.equal(r.status, 201, await r.clone().text());
  await Promise.all([b, c].map((n) => untilVisible(n, "/boards", 10_000)));

  // strong consistency on the node that took the command: its read model has the task when the POST answers
  const id = await createTask(a, "ship the cluster");
  const onA = await fetch(`${a.url}/plugin/taskboard/api/tasks/${id}`);
  assert.equal(onA.status, 200, "read on A right after the create");
  assert.equal(((await onA.json()) as { title: string }).title, "ship the cluster");
  const [msB, msC] = await Promise.all([b, c].map((n) => untilVisible(n, `/tasks/${id}`)));
  t.diagnostic(`task created on A: visible on B after ${msB.toFixed(0)} ms, on C after ${msC.toFixed(0)} ms`);
  assert.ok(msB < 2000 && msC < 2000, `B ${msB.toFixed(0)} ms, C ${msC.toFixed(0)} ms`);
  const more: number[] = [];
  for (let i = 0; i < 5; i++) {
    const next = await createTask(a, `task ${i}`);
    more.push(Math.max(...(await Promise.all([b, c].map((n) => untilVisible(n, `/tasks/${next}`))))));
  }
  more.sort((x, y) => x - y);
  t.diagnostic(
    `5 more tasks created on A: visible on both B and C after p50 ${more[2].toFixed(0)} ms, max ${more[4].toFixed(0)} ms`,
  );
  assert.ok(more[4] < 2000);

  // one store for all: the default board (created by every node's init, same command id) exists once
  const boards = (await (await fetch(`${c.url}/plugin/taskboard/api/boards`)).json()) as { boards: { id: string }[] };
  assert.deepEqual(
    boards.boards.map((x) => x.id),
    ["main"],
  );
  const stores = await sql<{ store_id: string; head: string }>(
    "SELECT store_id, head FROM hecate_stores WHERE starts_with(store_id, 'plugin.') ORDER BY store_id",
  );
  assert.deepEqual(
    stores.map((s) => s.store_id),
    ["plugin.taskboard"],
  );
  // read models are per node: SQLite files under each node's own home
  for (const id of ["a", "b", "c"]) {
    const dir = pluginPaths(join(cluster.work, `home-${id}`), "taskboard").sqlite;
    assert.ok(
      readdirSync(dir).some((f) => f.endsWith(".sqlite")),
      `${id}: ${readdirSync(dir)}`,
    );
  }

  // C down; a task created on B meanwhile; C restarts on its home and its read model catches up
  await c.stop();
  cluster.nodes.splice(cluster.nodes.indexOf(c), 1);
  const id2 = await createTask(b, "while C was down");
  const c2 = await node("c");
  const caughtUp = await untilVisible(c2, `/tasks/${id2}`);
  t.diagnostic(`C restarted: the task created while it was down visible ${caughtUp.toFixed(0)} ms after its start`);
  assert.equal((await fetch(`${c2.url}/plugin/taskboard/api/tasks/${id}`)).status, 200);

  // purge through B: the shared store's rows go (once: B's process manager), every node unloads it
  const events = await sql<{ n: string }>(
    "SELECT count(*) AS n FROM hecate_events WHERE store_id = 'plugin.taskboard'",
  );
  assert.ok(Number(events[0].n) >= 3, `events in the shared store: ${events[0].n}`);
  const rm = await b.api("DELETE", "/admin/api/plugins/taskboard?purge=1");
  assert.equal(rm.status, 200, await rm.clone().text());
  await until(
    async () => (await sql("SELECT 1 FROM hecate_stores WHERE store_id = 'plugin.taskboard'")).length === 0,
    5000,
    "store row gone",
  );
  for (const table of ["hecate_events", "hecate_checkpoints", "hecate_snapshots"])
    assert.deepEqual(await sql(`SELECT 1 FROM ${table} WHERE starts_with(store_id, 'plugin.taskboard')`), [], table);
  const removed = await sql<{ metadata: { purgedBy?: string } }>(
    "SELECT metadata FROM hecate_events WHERE store_id = 'plugins' AND stream = 'plugin-taskboard' AND type = 'plugin_removed_v1'",
  );
  assert.deepEqual(
    removed.map((e) => e.metadata.purgedBy),
    ["b"],
  );
});

/** A plugin with a named subscription that counts what it saw, in a worker or (`shared`) on the host's thread. */
function notes(name: string, isolation: "worker" | "shared") {
  return {
    name,
    version: "1.0.0",
    manifest: { isolation },
    extra: `import { getConfig, log, store } from "@hecate/sdk";
export function storeConfig() { return {}; }
let seen = 0;
let sub;`,
    init: `log.info("init config " + JSON.stringify(config));
  sub = store.subscribe({ name: "seen", handler: () => { seen++; } });`,
    routes: `{ method: "POST", path: "/add", handler: async () => {
      const r = await store.eventStore().append("things-1", [{ type: "thing_added_v1", data: {} }]);
      return { position: r.position };
    } },
    { method: "GET", path: "/seen", handler: () => ({ seen, name: sub.name, position: sub.position }) },
    { method: "GET", path: "/config", handler: () => getConfig() },`,
  };
}

test("a named subscription keeps one checkpoint per node (worker and shared plugins); the database password is in no config, log or answer", async () => {
  const nodes = ["a", "b", "c"].map((id) => byId.get(id)!);
  const [a, b] = nodes;
  for (const [name, isolation] of [
    ["notes", "worker"],
    ["notes-shared", "shared"],
  ] as const) {
    const r = await a.api("POST", "/admin/api/plugins", {
      body: readFileSync(await buildPackage(cluster.work, notes(name, isolation))),
      headers: gzip,
    });
    assert.equal(r.status, 201, await r.clone().text());
    const api = (d: TestDaemon, path: string) => `${d.url}/plugin/${name}/api${path}`;
    await until(async () => (await Promise.all(nodes.map((n) => fetch(api(n, "/seen"))))).every((x) => x.ok), 10_000);
    for (const d of [a, a, b]) {
      const add = await fetch(api(d, "/add"), { method: "POST", headers: json, body: "{}" });
      assert.equal(add.status, 200, await add.clone().text());
    }
    // every node's subscription sees all three events (a shared checkpoint would let only one of them see each)
    for (const n of nodes)
      await until(
        async () => {
          const s = (await (await fetch(api(n, "/seen"))).json()) as { seen: number; name: string; position: number };
          return s.seen === 3 && s.position === 3 && s.name === "seen";
        },
        5000,
        `3 seen by ${name} on ${n.url}`,
      );
    const checkpoints = await until(async () => {
      const rows = await sql<{ name: string; position: string }>(
        "SELECT name, position FROM hecate_checkpoints WHERE store_id = $1 ORDER BY name",
        [`plugin.${name}`],
      );
      return rows.length === 3 && rows.every((x) => x.position === "3") ? rows : null;
    }, 5000);
    assert.deepEqual(
      checkpoints?.map((x) => x.name),
      ["seen@a", "seen@b", "seen@c"],
    );

    // the plugin's config names the node and the database, without the password
    const config = (await (await fetch(api(a, "/config"))).json()) as { cluster: { nodeId: string; storeUrl: string } };
    assert.equal(config.cluster.nodeId, "a");
    assert.match(config.cluster.storeUrl, /^postgres:\/\/hecate@127\.0\.0\.1:\d+\/postgres$/);
    // init(config) logged whole: the plugin's log (admin API) has it, without the password
    const logs = await (await a.api("GET", `/admin/api/plugins/${name}/logs`)).text();
    assert.match(logs, /init config.*storeUrl.*hecate@127\.0\.0\.1/);
    for (const path of ["/admin/api/plugins", `/admin/api/plugins/${name}/events`, `/admin/api/plugins/${name}/logs`]) {
      const body = await (await a.api("GET", path)).text();
      assert.ok(!body.includes(PASSWORD), `${path} shows the password`);
    }
  }
});
