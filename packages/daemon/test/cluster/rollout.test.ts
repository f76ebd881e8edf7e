/**
 * Cluster mode: three daemons on loopback share one real PostgreSQL (started here). An install through A's admin API
 * is loaded on B and C (measured, asserted < 2 s) and served by A when it answers; the shared stream holds each
 * lifecycle event once however many nodes reacted; the list answer shows every node's own status; an upgrade on C, a
 * deactivate on B, an activate on A and a remove on B roll out to every node; a node that was down (restart, same
 * home) or joins later catches up from the shared streams.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import type { LifecycleEvent } from "../../src/lifecycle/service.js";
import { buildPackage } from "../lifecycle/helpers.js";
import { count, servedVersion, sharedTypes, untilServed, useCluster } from "./helpers.js";

const cluster = useCluster("cluster");

const gzip = { "content-type": "application/gzip" };

test("3 nodes: install on A is loaded on B and C within 2 s; upgrade on C, deactivate on B, activate on A, remove on B roll out; late and restarted nodes catch up", async (t) => {
  const { server, work, nodes } = cluster;
  const [v1, v2, late] = await Promise.all([
    buildPackage(work, { name: "shared", version: "1.0.0" }),
    buildPackage(work, { name: "shared", version: "2.0.0" }),
    buildPackage(work, { name: "late", version: "1.0.0" }),
  ]);
  const [a, b, c] = await Promise.all(["a", "b", "c"].map((id) => cluster.start(id)));

  // install on A; the rollout is timed from the moment A recorded the install (upload received, checked, stored)
  let accepted = 0;
  const onInstalled = (e: LifecycleEvent) => {
    if (e.type === "plugin_installed_v1") accepted = performance.now();
  };
  a.lifecycle.on("event", onInstalled);
  const t0 = performance.now();
  const r = await a.api("POST", "/admin/api/plugins", { body: readFileSync(v1), headers: gzip });
  assert.equal(r.status, 201, await r.clone().text());
  a.lifecycle.off("event", onInstalled);
  const answered = performance.now() - t0;
  assert.equal(await servedVersion(a, "shared"), "1.0.0", "the node that took the install serves it when it answers");
  await untilServed([b, c], "shared", "1.0.0", 10_000);
  const rollout = performance.now() - accepted;
  t.diagnostic(
    `install on A: POST answered after ${answered.toFixed(0)} ms; served by B and C ${rollout.toFixed(0)} ms after A recorded the install (${(performance.now() - t0).toFixed(0)} ms after the POST began)`,
  );
  assert.ok(accepted > 0 && rollout < 2000, `rollout to B and C took ${rollout.toFixed(0)} ms`);

  // one shared event per step, whatever the number of nodes that reacted
  const types = await sharedTypes(server.url, "shared");
  for (const type of ["plugin_installed_v1", "plugin_package_extracted_v1", "plugin_activated_v1"])
    assert.equal(count(types, type), 1, `${type} once: ${types.join(",")}`);
  assert.equal(count(types, "plugin_load_confirmed_v1"), 1, types.join(","));

  // every node's own status, in any node's list answer
  const list = await (await b.api("GET", "/admin/api/plugins")).json();
  assert.equal(list.cluster.node, "b");
  assert.deepEqual(
    list.cluster.nodes.map((n: { node: string }) => n.node),
    ["a", "b", "c"],
  );
  const shared = list.plugins.find((p: { name: string }) => p.name === "shared");
  assert.equal(shared.status, "loaded");
  assert.deepEqual(
    shared.nodes.map((n: { node: string; status: string; version: string }) => [n.node, n.status, n.version]),
    [
      ["a", "loaded", "1.0.0"],
      ["b", "loaded", "1.0.0"],
      ["c", "loaded", "1.0.0"],
    ],
  );

  // upgrade on C -> every node serves 2.0.0
  const t1 = performance.now();
  const up = await c.api("POST", "/admin/api/plugins/shared/upgrade", { body: readFileSync(v2), headers: gzip });
  assert.equal(up.status, 200, await up.clone().text());
  const upgraded = await untilServed([a, b, c], "shared", "2.0.0", 10_000);
  t.diagnostic(`upgrade on C: served as 2.0.0 by all 3 after ${(performance.now() - t1).toFixed(0)} ms`);
  assert.ok(upgraded < 2000);

  // deactivate on B -> served by none; activate on A -> served by all again
  const off = await b.api("POST", "/admin/api/plugins/shared/deactivate");
  assert.equal(off.status, 200, await off.clone().text());
  assert.equal(await servedVersion(b, "shared"), null, "B's routes are gone when it answers");
  await untilServed([a, b, c], "shared", null, 5000);
  const on = await a.api("POST", "/admin/api/plugins/shared/activate");
  assert.equal(on.status, 200, await on.clone().text());
  assert.equal(await servedVersion(a, "shared"), "2.0.0");
  await untilServed([a, b, c], "shared", "2.0.0", 5000);

  // C goes down; while it is down, another plugin is installed on A
  await c.stop();
  nodes.splice(nodes.indexOf(c), 1);
  const lr = await a.api("POST", "/admin/api/plugins", { body: readFileSync(late), headers: gzip });
  assert.equal(lr.status, 201, await lr.clone().text());

  // remove on B -> gone on A (C is down: it learns it when it comes back)
  const rm = await b.api("DELETE", "/admin/api/plugins/shared");
  assert.equal(rm.status, 200, await rm.clone().text());
  await untilServed([a, b], "shared", null, 5000);

  // C restarts on its home, D joins for the first time: both catch up (late loaded, shared not)
  const [c2, d] = await Promise.all([cluster.start("c"), cluster.start("d")]);
  for (const n of [c2, d]) {
    assert.equal(await servedVersion(n, "late"), "1.0.0", "late plugin loaded at boot");
    assert.equal(await servedVersion(n, "shared"), null, "removed plugin not served");
    assert.equal(n.lifecycle.view("shared")?.status, "removed");
  }
  const after = await (await d.api("GET", "/admin/api/plugins")).json();
  const lateView = after.plugins.find((p: { name: string }) => p.name === "late");
  assert.deepEqual(
    lateView.nodes.map((n: { node: string; status: string }) => [n.node, n.status]),
    [
      ["a", "loaded"],
      ["b", "loaded"],
      ["c", "loaded"],
      ["d", "loaded"],
    ],
  );
  const sharedView = after.plugins.find((p: { name: string }) => p.name === "shared");
  assert.deepEqual(
    sharedView.nodes.map((n: { node: string; status: string }) => [n.node, n.status]),
    [
      ["a", "removed"],
      ["b", "removed"],
      ["c", "removed"],
      ["d", "removed"],
    ],
  );
  // still one shared event per step after four nodes (one of them twice) went through the history
  const lateTypes = await sharedTypes(server.url, "late");
  for (const type of [
    "plugin_installed_v1",
    "plugin_package_extracted_v1",
    "plugin_activated_v1",
    "plugin_load_confirmed_v1",
  ])
    assert.equal(count(lateTypes, type), 1, `${type} once: ${lateTypes.join(",")}`);
});
