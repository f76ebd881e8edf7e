/**
 * removePostgresStores on a real PostgreSQL (started here): a store and its `{id}.*` stores go with their events,
 * checkpoints and snapshots, in one transaction; a store whose id only starts with the same letters stays; a store
 * still open cannot append to the removed store (STORE_MISSING) and opening it again starts it empty.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openEventStore, removePostgresStores } from "../src/index.js";
import { type PgServer, startPostgres } from "../src/testing/postgres.js";

let server: PgServer;
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

test("a store and its dotted children are removed; a look-alike id stays", async () => {
  const ids = ["plugin.x", "plugin.x.other", "plugin.xy"];
  const stores = ids.map((storeId) => openEventStore({ url: server.url, storeId }));
  try {
    for (const s of stores) {
      await s.append("note-1", [{ type: "note_added_v1", data: { n: 1 } }]);
      await s.saveSnapshot("note-1", 0, { n: 1 });
      const sub = s.subscribe({ name: "cp", handler: () => {} });
      await sub.caughtUp();
      await sub.stop();
    }
    assert.deepEqual(await removePostgresStores(server.url, "plugin.x"), ["plugin.x", "plugin.x.other"]);

    const [x, , xy] = stores;
    await assert.rejects(x.append("note-1", [{ type: "note_added_v1", data: {} }]), { code: "STORE_MISSING" });
    assert.equal((await xy.readAll()).length, 1, "plugin.xy kept");
    assert.equal(await xy.readCheckpoint("cp"), 1);
    assert.notEqual(await xy.loadSnapshot("note-1"), null);

    const again = openEventStore({ url: server.url, storeId: "plugin.x.other" });
    try {
      assert.equal(await again.headPosition(), 0);
      assert.deepEqual(await again.readAll(), []);
      assert.equal(await again.readCheckpoint("cp"), null);
      assert.equal(await again.loadSnapshot("note-1"), null);
      assert.equal((await again.append("note-1", [{ type: "note_added_v1", data: {} }])).position, 1);
    } finally {
      await again.close();
    }
    await assert.rejects(removePostgresStores(server.url, "bad id"), /invalid storeId/);
  } finally {
    await Promise.all(stores.map((s) => s.close()));
  }
});
