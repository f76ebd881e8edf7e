/**
 * Cluster mode in the SDK without a cluster: the config the host gives (store URL with a password) is seen by the
 * plugin without the password while the SDK keeps it; plugin store ids in the shared database; `singleton` jobs
 * outside cluster mode run as any job, and their options are checked. (The cluster itself: the daemon's
 * test/cluster/shared-store.test.ts and singleton.test.ts, on real PostgreSQL.)
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { clusterStoreId, clusterStorePrefix } from "../src/cluster-store.js";
import { clusterStore, getConfig, resetConfig, standaloneConfig } from "../src/config.js";
import type { PluginConfig, PluginModule } from "../src/contract.js";
import { Dispatcher } from "../src/runtime/dispatcher.js";
import * as scheduler from "../src/scheduler.js";

const URL_WITH_PASSWORD = "postgres://hecate:pa55word@db.example:5432/hecate";

test("init(config) and getConfig() show the cluster store URL without its password; the SDK keeps it", async () => {
  let seen: PluginConfig | undefined;
  const mod: PluginModule = {
    manifest: () => ({ name: "p", version: "1.0.0" }),
    init: (config) => {
      seen = config;
    },
  };
  const config = standaloneConfig("p", { standalone: false, cluster: { nodeId: "n1", storeUrl: URL_WITH_PASSWORD } });
  const r = await new Dispatcher({ post: () => {} }).load(mod, config);
  assert.equal(r.t, "ready");
  try {
    assert.deepEqual(seen?.cluster, { nodeId: "n1", storeUrl: "postgres://hecate@db.example:5432/hecate" });
    assert.ok(!JSON.stringify(getConfig()).includes("pa55word"));
    assert.deepEqual(clusterStore(), { nodeId: "n1", url: URL_WITH_PASSWORD });
  } finally {
    resetConfig();
  }
  assert.equal(clusterStore(), null, "forgotten with the config");
});

test("plugin store ids in the shared database carry the plugin name", () => {
  assert.equal(clusterStoreId("taskboard", "taskboard"), "plugin.taskboard");
  assert.equal(clusterStoreId("taskboard", "other"), "plugin.taskboard.other");
  assert.notEqual(clusterStoreId("a", "b"), clusterStoreId("b", "a"));
  const long = clusterStoreId("p".repeat(64), "s".repeat(64));
  assert.ok(long.length <= 128 && long.startsWith(`${clusterStorePrefix("p".repeat(64))}.`), long);
  assert.notEqual(long, clusterStoreId("p".repeat(64), `${"s".repeat(63)}t`));
});

test("a singleton job outside cluster mode runs on this node as any job; its options are checked", async () => {
  const s = scheduler.createScheduler({ log: () => {} });
  try {
    let runs = 0;
    const job = s.every(
      60_000,
      () => {
        runs++;
      },
      { name: "once", singleton: true },
    );
    await job.trigger();
    assert.equal(runs, 1);
    assert.equal(job.stats.elsewhere, 0);
    assert.throws(() => s.every(1000, () => {}, { singleton: true }), { code: "invalid_schedule", field: "name" });
    for (const leaseMs of [100, 1.5, Number.NaN])
      assert.throws(() => s.every(1000, () => {}, { name: "x", singleton: true, leaseMs }), {
        code: "invalid_schedule",
        field: "leaseMs",
      });
  } finally {
    await s.stopAll();
  }
});
