/**
 * Cluster mode: a settings change taken by one node's admin API reaches the plugin on every node: live through
 * onSettingsChanged (once per node, the taker included), or by a swap where the plugin has no callback; a secret set
 * through one node is read by the plugin on the others (one settings key for the cluster); a node that was down
 * loads the plugin with the settings changed meanwhile.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { settingsPlugin } from "../admin/settings-plugin.js";
import { buildPackage, type TestDaemon, until } from "../lifecycle/helpers.js";
import { useCluster } from "./helpers.js";

const cluster = useCluster("cluster-settings");
const gzip = { "content-type": "application/gzip" };
const json = { "content-type": "application/json" };
const SECRET = `sk-${randomBytes(12).toString("hex")}`;
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

interface Seen {
  instance: string;
  changes: number;
  init: Record<string, unknown>;
  now: Record<string, unknown>;
}

async function seen(d: TestDaemon, plugin: string): Promise<Seen | null> {
  const r = await fetch(`${d.url}/plugin/${plugin}/api/settings`);
  if (r.status !== 200) {
    await r.body?.cancel();
    return null;
  }
  return (await r.json()) as Seen;
}

test("a settings change on one node takes effect on every node (live, swap, secret, a node that was down)", async (t) => {
  const [live, swap] = await Promise.all([
    buildPackage(cluster.work, settingsPlugin("1.0.0", { callback: true })),
    buildPackage(cluster.work, { ...settingsPlugin("1.0.0", { callback: false }), name: "cfg2" }),
  ]);
  const [a, b, c0] = await Promise.all(["a", "b", "c"].map((id) => cluster.start(id)));
  let c = c0;
  for (const [archive, name] of [
    [live, "cfg"],
    [swap, "cfg2"],
  ]) {
    const r = await a.api("POST", "/admin/api/plugins", { body: readFileSync(archive), headers: gzip });
    assert.equal(r.status, 201, await r.clone().text());
    await until(async () => (await Promise.all([a, b, c].map((d) => seen(d, name)))).every(Boolean), 10_000, name);
  }
  const before = await Promise.all([a, b, c].map((d) => seen(d, "cfg")));

  // live: PUT on B, every node's plugin gets it through onSettingsChanged (once each), the secret included
  const t0 = performance.now();
  const put = await b.api("PUT", "/admin/api/plugins/cfg/settings", {
    body: JSON.stringify({ values: { greeting: "hello", limit: 5, apiKey: SECRET } }),
    headers: json,
  });
  assert.equal(put.status, 200, await put.clone().text());
  assert.equal((await put.json()).applied, "live");
  const after = (await until(
    async () => {
      const all = await Promise.all([a, b, c].map((d) => seen(d, "cfg")));
      return all.every((s) => s?.now.greeting === "hello") ? all : null;
    },
    10_000,
    "greeting on every node",
  )) as Seen[];
  t.diagnostic(`live change on B seen by A, B and C after ${(performance.now() - t0).toFixed(0)} ms`);
  for (const [i, s] of after.entries()) {
    const node = ["a", "b", "c"][i];
    assert.equal(s.instance, before[i]?.instance, `${node}: the same instance (live, no swap)`);
    assert.equal(s.now.limit, 5, node);
    assert.equal(s.now.apiKey, sha(SECRET), `${node}: the secret set through B`);
  }
  await new Promise((r) => setTimeout(r, 300)); // a second apply on B (its own process manager) would show by now
  for (const d of [a, b, c]) assert.equal((await seen(d, "cfg"))?.changes, 1, `${d.cluster?.nodeId}: applied once`);
  const view = await (await c.api("GET", "/admin/api/plugins/cfg/settings")).json();
  assert.equal(view.values.greeting, "hello");
  assert.deepEqual(view.secrets.apiKey, { set: true });

  // swap: a plugin without onSettingsChanged is swapped on every node with the new settings
  const swapBefore = await Promise.all([a, b, c].map((d) => seen(d, "cfg2")));
  const put2 = await a.api("PUT", "/admin/api/plugins/cfg2/settings", {
    body: JSON.stringify({ values: { greeting: "swapped" } }),
    headers: json,
  });
  assert.equal(put2.status, 200, await put2.clone().text());
  assert.equal((await put2.json()).applied, "swap");
  await until(
    async () => (await Promise.all([a, b, c].map((d) => seen(d, "cfg2")))).every((s) => s?.init.greeting === "swapped"),
    10_000,
    "cfg2 swapped everywhere",
  );
  const swapped = await Promise.all([a, b, c].map((d) => seen(d, "cfg2")));
  for (const [i, s] of swapped.entries()) assert.notEqual(s?.instance, swapBefore[i]?.instance, "a new instance");

  // C is down while A changes the settings: it loads the plugin with them when it comes back
  await cluster.stop(c);
  const put3 = await a.api("PUT", "/admin/api/plugins/cfg/settings", {
    body: JSON.stringify({ values: { greeting: "while-c-was-down" } }),
    headers: json,
  });
  assert.equal(put3.status, 200, await put3.clone().text());
  c = await cluster.start("c");
  const back = await seen(c, "cfg");
  assert.equal(back?.init.greeting, "while-c-was-down");
  assert.equal(back?.init.apiKey, sha(SECRET), "C reads the secret with the cluster's key after its restart");
  await until(async () => (await seen(b, "cfg"))?.now.greeting === "while-c-was-down", 10_000, "B live");
});
