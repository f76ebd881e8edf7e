import assert from "node:assert/strict";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { getConfig, resetConfig, setConfig, standaloneConfig } from "../src/config.js";
import { HttpError, type PluginConfig, type PluginModule } from "../src/contract.js";
import { createTestHarness, HarnessLoadError } from "../src/runtime/harness.js";
import * as store from "../src/store.js";

interface Counter {
  count: number;
}
const counter: store.AggregateDefinition<Counter> = {
  name: "counter",
  initialState: { count: 0 },
  evolve: (s, e) => (e.type === "incremented_v1" ? { count: s.count + (e.data as { by: number }).by } : s),
  decide: (cmd, s) => {
    const by = (cmd.data as { by: number }).by;
    if (by < 0) return store.reject("decrement_not_found", "counters only go up");
    if (s.count + by > 10) return store.reject("limit_reached", "counter would pass 10", { count: s.count, by });
    return [{ type: "incremented_v1", data: { by } }];
  },
};

function startCounterProjection() {
  return store.projection({
    name: "counters",
    setup: (db) => db.exec("CREATE TABLE IF NOT EXISTS counters (id TEXT PRIMARY KEY, count INTEGER NOT NULL)"),
    apply: (db, e) => {
      const by = (e.data as { by: number }).by;
      db.prepare(
        "INSERT INTO counters (id, count) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET count = count + excluded.count",
      ).run(e.stream, by);
    },
    types: ["incremented_v1"],
  });
}

/** The temp `$HECATE_HOME` a standalone config made (`{home}/plugins/{name}`). */
function homeOf(config: PluginConfig): string {
  return join(config.paths.root, "..", "..");
}

test("standalone: the first call opens the plugin's store from getConfig(); dispatch, read, project, query", async () => {
  resetConfig();
  setConfig(standaloneConfig("counter-app"));
  const config = getConfig();
  try {
    assert.equal(store.isOpen(), false);
    const p = startCounterProjection();
    assert.equal(store.isOpen(), true);
    assert.equal(store.eventStore().location, join(config.paths.store, "counter-app.sqlite"));
    assert.equal(p.db.name, join(config.paths.sqlite, "counters.sqlite"));

    const r1 = await store.dispatch(counter, "a", { type: "increment_v1", data: { by: 3 } }, { consistency: "strong" });
    assert.equal(r1.stream, "counter-a");
    assert.equal(r1.revision, 0);
    await store.dispatch(counter, "a", { id: "cmd-2", type: "increment_v1", data: { by: 4 } });
    const dup = await store.dispatch(counter, "a", { id: "cmd-2", type: "increment_v1", data: { by: 4 } });
    assert.equal(dup.duplicate, true);
    await store.dispatch(counter, "b", { type: "increment_v1", data: { by: 1 } }, { consistency: "strong" });

    assert.deepEqual(
      (await store.readStream("counter-a")).map((e) => e.data),
      [{ by: 3 }, { by: 4 }],
    );
    assert.equal((await store.readAll({ streamPrefix: "counter-" })).length, 3);
    assert.equal((await store.load(counter, "a")).state.count, 7);
    // strong consistency on the last dispatch: the read model already has it.
    assert.deepEqual(store.query("counters", "SELECT id, count FROM counters ORDER BY id"), [
      { id: "counter-a", count: 7 },
      { id: "counter-b", count: 1 },
    ]);
    assert.deepEqual(store.queryOne("counters", "SELECT count FROM counters WHERE id = ?", "counter-a"), { count: 7 });
    assert.equal(store.queryOne("counters", "SELECT count FROM counters WHERE id = ?", "nope"), undefined);

    // Business-rule rejection: typed, nothing written, mapped to a 409 for handlers.
    const rejected = await store.dispatch(counter, "a", { type: "increment_v1", data: { by: 5 } }).then(
      () => assert.fail("should reject"),
      (e: unknown) => e,
    );
    assert.ok(rejected instanceof store.CommandRejected);
    assert.equal((await store.readStream("counter-a")).length, 2);
    const http = store.asHttpError(rejected) as HttpError;
    assert.ok(http instanceof HttpError);
    assert.equal(http.status, 409);
    assert.equal(http.code, "limit_reached");
    assert.equal(http.message, "counter would pass 10");
    assert.deepEqual(http.details, { count: 7, by: 5 });
    assert.equal((store.asHttpError(rejected, { limit_reached: 422 }) as HttpError).status, 422);
    const notFound = await store.dispatch(counter, "c", { type: "increment_v1", data: { by: -1 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.equal((store.asHttpError(notFound) as HttpError).status, 404);
    const other = new Error("disk on fire");
    assert.equal(store.asHttpError(other), other);

    // Writes through query() are refused; unknown projections are named.
    assert.throws(() => store.query("counters", "DELETE FROM counters"), { code: "invalid_projection", field: "sql" });
    assert.throws(() => store.query("nope", "SELECT 1"), { code: "unknown_projection" });
    assert.throws(() => startCounterProjection(), { code: "invalid_projection", field: "name" });
    assert.throws(() => store.projection({ name: "../x", apply() {} }), { code: "invalid_projection" });
    assert.throws(() => store.projection({ name: "ok", file: "../../etc/x", apply() {} }), { field: "file" });
  } finally {
    await store.close();
    resetConfig();
    rmSync(homeOf(config), { recursive: true, force: true });
  }
});

test("subscribe: catch-up then live, durable name resumes, stopped by close()", async () => {
  resetConfig();
  setConfig(standaloneConfig("subs"));
  const config = getConfig();
  try {
    await store.dispatch(counter, "x", { type: "increment_v1", data: { by: 1 } });
    const seen: number[] = [];
    const sub = store.subscribe({ name: "watcher", handler: (e) => void seen.push(e.position) });
    await sub.caughtUp();
    assert.deepEqual(seen, [1]);
    const r = await store.dispatch(counter, "x", { type: "increment_v1", data: { by: 1 } });
    await sub.caughtUp(r.position);
    assert.deepEqual(seen, [1, 2]);
    assert.equal(sub.name, "watcher");
    assert.equal(sub.position, 2);
    await store.close();
    assert.equal(store.isOpen(), false);

    // Reopened (same config, same file): the durable checkpoint resumes after position 2.
    await store.eventStore().append("counter-x", [{ type: "incremented_v1", data: { by: 1 } }]);
    const again: number[] = [];
    const sub2 = store.subscribe({ name: "watcher", handler: (e) => void again.push(e.position) });
    await sub2.caughtUp();
    assert.deepEqual(again, [3]);
    await sub2.stop();
  } finally {
    await store.close();
    resetConfig();
    rmSync(homeOf(config), { recursive: true, force: true });
  }
});

function pluginWithStore(storeConfig: PluginModule["storeConfig"], onInit?: (c: PluginConfig) => void): PluginModule {
  return {
    manifest: () => ({ name: "tally", version: "1.0.0" }),
    storeConfig,
    init(config) {
      onInit?.(config);
      startCounterProjection();
    },
    routes: () => [
      {
        method: "POST",
        path: "/count/:id",
        handler: async (req) => {
          try {
            const r = await store.dispatch(
              counter,
              req.params.id,
              { type: "increment_v1", data: await req.json() },
              { consistency: "strong" },
            );
            return { status: 201, body: { revision: r.revision } };
          } catch (err) {
            throw store.asHttpError(err);
          }
        },
      },
      { method: "GET", path: "/counts", handler: () => store.query("counters", "SELECT * FROM counters ORDER BY id") },
    ],
  };
}

test("host: the store is opened at load stage 'store' before init, config.storeId set, closed at unload", async () => {
  let sawAtInit: { storeId: string | null; open: boolean; file: boolean } | undefined;
  const mod = pluginWithStore(
    () => ({ storeId: "tally-events", durability: "NORMAL" }),
    (c) => {
      sawAtInit = {
        storeId: c.storeId,
        open: store.isOpen(),
        file: existsSync(join(c.paths.store, "tally-events.sqlite")),
      };
    },
  );
  const h = await createTestHarness(mod);
  const home = homeOf(h.config);
  try {
    assert.deepEqual(sawAtInit, { storeId: "tally-events", open: true, file: true });
    assert.equal(getConfig().storeId, "tally-events");
    const r = await h.request("POST", "/count/a", { body: { by: 2 } });
    assert.equal(r.status, 201);
    const tooMuch = await h.request("POST", "/count/a", { body: { by: 9 } });
    assert.equal(tooMuch.status, 409);
    assert.equal((tooMuch.body as { error: { code: string } }).error.code, "limit_reached");
    const list = await h.request("GET", "/counts");
    assert.deepEqual(list.body, [{ id: "counter-a", count: 2 }]);
    await h.close();
    assert.equal(store.isOpen(), false, "unload closed the store");

    // A second load of the same plugin (an upgrade) finds its events and read model again.
    const h2 = await createTestHarness(
      pluginWithStore(() => ({ storeId: "tally-events" })),
      {
        config: { paths: h.config.paths },
      },
    );
    const again = await h2.request("GET", "/counts");
    assert.deepEqual(again.body, [{ id: "counter-a", count: 2 }]);
    await h2.close();
  } finally {
    await h.close();
    rmSync(home, { recursive: true, force: true });
  }
});

test("host: a store that cannot be opened fails the load at stage 'store' (and leaves nothing open)", async () => {
  const base = standaloneConfig("tally");
  try {
    // storeId escaping the store dir
    await assert.rejects(
      createTestHarness(
        pluginWithStore(() => ({ storeId: "../../other-plugin/store/other" })),
        {
          config: { paths: base.paths },
        },
      ),
      (e: unknown) => e instanceof HarnessLoadError && e.stage === "store" && /not a valid name/.test(e.message),
    );
    assert.equal(store.isOpen(), false);

    // a corrupt store file
    mkdirSync(base.paths.store, { recursive: true });
    writeFileSync(join(base.paths.store, "tally.sqlite"), Buffer.alloc(8192, 7));
    await assert.rejects(
      createTestHarness(
        pluginWithStore(() => ({})),
        { config: { paths: base.paths } },
      ),
      (e: unknown) => e instanceof HarnessLoadError && e.stage === "store",
    );
    assert.equal(store.isOpen(), false);
  } finally {
    rmSync(homeOf(base), { recursive: true, force: true });
  }
});

test("host: a failure after the store opened (init throws) closes it again", async () => {
  const base = standaloneConfig("tally");
  try {
    await assert.rejects(
      createTestHarness(
        pluginWithStore(
          () => ({}),
          () => {
            throw new Error("init broke");
          },
        ),
        { config: { paths: base.paths } },
      ),
      (e: unknown) => e instanceof HarnessLoadError && e.stage === "init",
    );
    assert.equal(store.isOpen(), false);
  } finally {
    rmSync(homeOf(base), { recursive: true, force: true });
  }
});

test("host: without storeConfig() a hosted plugin has no store (storeId null, typed error)", async () => {
  const base = standaloneConfig("nostore");
  const mod: PluginModule = {
    manifest: () => ({ name: "nostore", version: "1.0.0" }),
    init() {},
    routes: () => [
      {
        method: "GET",
        path: "/try",
        handler: () => {
          try {
            store.eventStore();
            return { opened: true };
          } catch (err) {
            return { code: (err as store.PluginStoreError).code, storeId: getConfig().storeId };
          }
        },
      },
    ],
  };
  const h = await createTestHarness(mod, { config: { paths: base.paths, standalone: false } });
  try {
    const r = await h.request("GET", "/try");
    assert.deepEqual(r.body, { code: "store_not_configured", storeId: null });
    assert.equal(existsSync(base.paths.store), false);
  } finally {
    await h.close();
    rmSync(homeOf(base), { recursive: true, force: true });
  }
});
