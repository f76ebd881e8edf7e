/**
 * Cluster mode: what goes wrong with a plugin on ONE node stays that node's status. A worker crashing on B (restarted,
 * then disabled after its restart budget) leaves A and C serving, the shared aggregate LOADED and without a
 * crash / disable event; the list shows B failed with the reason; `POST .../restart` on B reloads it there. A plugin
 * whose load fails only on B (a marker file in B's data dir) is loaded for the cluster, failed on B only, and the node
 * that took the install answers 201.
 */
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { buildPackage, type TestDaemon, until } from "../lifecycle/helpers.js";
import { count, servedVersion, sharedTypes, untilServed, useCluster } from "./helpers.js";

const cluster = useCluster("cluster-fault");
const gzip = { "content-type": "application/gzip" };

interface NodeRow {
  node: string;
  status: string;
  version: string | null;
  error: string | null;
}

async function listed(d: TestDaemon, name: string): Promise<{ status: string; nodes: NodeRow[] }> {
  const list = await (await d.api("GET", "/admin/api/plugins")).json();
  return list.plugins.find((p: { name: string }) => p.name === name);
}

const row = (nodes: NodeRow[], id: string) => nodes.find((n) => n.node === id);

test("a plugin crashing on one node: restarted, then disabled there only; the others serve, the aggregate stays loaded; restart on that node recovers", async (t) => {
  const archive = await buildPackage(cluster.work, {
    name: "flaky",
    version: "1.0.0",
    routes: `{ method: "POST", path: "/die", handler: () => { setTimeout(() => process.exit(3), 1); return { bye: true }; } },`,
  });
  const [a, b, c] = await Promise.all(["a", "b", "c"].map((id) => cluster.start(id)));
  const r = await a.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gzip });
  assert.equal(r.status, 201, await r.clone().text());
  await untilServed([a, b, c], "flaky", "1.0.0", 10_000);

  // one crash on B: its host restarts the worker; B's row notes it, nothing shared
  await fetch(`${b.url}/plugin/flaky/api/die`, { method: "POST" });
  await until(
    async () => row((await listed(a, "flaky")).nodes, "b")?.error?.startsWith("crashed (restarted)"),
    10_000,
    "B's crash noted",
  );
  await untilServed([b], "flaky", "1.0.0", 10_000);

  // crash B until its restart budget (3 within 5 min) is spent: disabled on B
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) {
    const got = await fetch(`${b.url}/plugin/flaky/api/die`, { method: "POST" }).catch(() => null);
    await got?.body?.cancel();
    const gone = await until(
      async () =>
        (await servedVersion(b, "flaky")) === "1.0.0"
          ? "up"
          : row((await listed(a, "flaky")).nodes, "b")?.status === "failed"
            ? "failed"
            : null,
      10_000,
      "B restarted or disabled",
    );
    if (gone === "failed") break;
  }
  const after = await listed(c, "flaky");
  t.diagnostic(
    `disabled on B after ${(performance.now() - t0).toFixed(0)} ms: ${JSON.stringify(row(after.nodes, "b"))}`,
  );
  assert.equal(after.status, "loaded", "the shared aggregate is not FAILED");
  assert.deepEqual(
    after.nodes.map((n) => [n.node, n.status]),
    [
      ["a", "loaded"],
      ["b", "failed"],
      ["c", "loaded"],
    ],
  );
  assert.match(row(after.nodes, "b")?.error ?? "", /^disabled: crashed \d+ times/);
  assert.equal(row(after.nodes, "b")?.version, "1.0.0");
  assert.equal(await servedVersion(b, "flaky"), null, "not served on B");
  assert.equal(await servedVersion(a, "flaky"), "1.0.0");
  assert.equal(await servedVersion(c, "flaky"), "1.0.0");
  for (const d of [a, c]) assert.equal(d.lifecycle.view("flaky")?.lastError, null);
  const types = await sharedTypes(cluster.server.url, "flaky");
  for (const type of ["plugin_crashed_v1", "plugin_disabled_v1", "plugin_load_failed_v1"])
    assert.equal(count(types, type), 0, `${type} in the shared stream: ${types.join(",")}`);

  // restart on B: loaded there again, its row says so; A's restart route answers too (a no-op reload)
  const re = await b.api("POST", "/admin/api/plugins/flaky/restart");
  assert.equal(re.status, 200, await re.clone().text());
  assert.deepEqual(await re.json(), { node: "b", status: "loaded", version: "1.0.0" });
  assert.equal(await servedVersion(b, "flaky"), "1.0.0");
  const healed = await listed(a, "flaky");
  assert.deepEqual(
    healed.nodes.map((n) => [n.node, n.status, n.error]),
    [
      ["a", "loaded", null],
      ["b", "loaded", null],
      ["c", "loaded", null],
    ],
  );
  assert.equal((await a.api("POST", "/admin/api/plugins/nosuch/restart")).status, 404);
  const off = await a.api("POST", "/admin/api/plugins/flaky/deactivate");
  assert.equal(off.status, 200, await off.clone().text());
  const refused = await b.api("POST", "/admin/api/plugins/flaky/restart");
  assert.equal(refused.status, 409);
  assert.equal((await refused.json()).error.code, "plugin_not_activated");

  // a load that fails on B only (a marker in B's data dir): loaded for the cluster, failed on B
  const picky = await buildPackage(cluster.work, {
    name: "picky",
    version: "1.0.0",
    extra: `import { existsSync } from "node:fs";`,
    init: `if (existsSync(join(config.dataDir, "fail-here"))) throw new Error("refusing to start on this node");`,
  });
  const marker = join(b.home, "plugins", "picky", "data");
  mkdirSync(marker, { recursive: true });
  writeFileSync(join(marker, "fail-here"), "");
  const ins = await c.api("POST", "/admin/api/plugins", { body: readFileSync(picky), headers: gzip });
  assert.equal(ins.status, 201, await ins.clone().text());
  await untilServed([a, c], "picky", "1.0.0", 10_000);
  const p = (await until(
    async () => {
      const v = await listed(a, "picky");
      return v.nodes.length === 3 && v.nodes.every((n) => n.status !== "extracted") ? v : null;
    },
    10_000,
    "picky's node rows",
  ))!;
  assert.equal(p.status, "loaded", "a load failure on B does not mark the plugin failed for the cluster");
  assert.deepEqual(
    p.nodes.map((n) => [n.node, n.status]),
    [
      ["a", "loaded"],
      ["b", "failed"],
      ["c", "loaded"],
    ],
  );
  assert.match(row(p.nodes, "b")?.error ?? "", /refusing to start on this node/);
  assert.equal(await servedVersion(b, "picky"), null);
  // B's operator fixes the cause and restarts it there
  rmSync(join(marker, "fail-here"));
  const fixed = await b.api("POST", "/admin/api/plugins/picky/restart");
  assert.equal(fixed.status, 200, await fixed.clone().text());
  assert.equal(await servedVersion(b, "picky"), "1.0.0");
});
