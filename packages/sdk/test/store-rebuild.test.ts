/** `store.rebuild(name)` and a projection `version`: the plugin's read model rebuilt from its own event store. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { getConfig, resetConfig, setConfig, standaloneConfig } from "../src/config.js";
import * as store from "../src/store.js";

test("store.rebuild replays every event into a reset read model; a version bump builds a new one", async () => {
  resetConfig();
  setConfig(standaloneConfig("rebuild-app"));
  let resets = 0;
  const def = (version: number): store.ProjectionDefinition => ({
    name: "notes",
    version,
    setup: (db) => db.exec("CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY, v INTEGER NOT NULL)"),
    reset: (db) => {
      resets++;
      db.exec("DROP TABLE IF EXISTS notes");
    },
    apply: (db, e) => void db.prepare("INSERT INTO notes (id, v) VALUES (?, ?)").run(e.stream, version),
  });
  try {
    store.projection(def(1));
    for (const id of ["a", "b", "c"]) await store.eventStore().append(`note-${id}`, [{ type: "noted_v1", data: {} }]);
    await store.caughtUp();
    // a row changed behind the projection's back (a bug fixed in a new version, say): rebuild puts it right
    store.readModel("notes").prepare("DELETE FROM notes WHERE id = 'note-b'").run();
    await store.rebuild("notes");
    assert.equal(resets, 1);
    assert.deepEqual(
      store.query<{ id: string }>("notes", "SELECT id FROM notes ORDER BY id").map((r) => r.id),
      ["note-a", "note-b", "note-c"],
    );

    // the next plugin version bumps the read model's version: a new file built from the whole store with the new
    // apply(), while the old file (the previous version may still be serving from it) stays; v3 deletes v1's
    await store.close();
    const sqlite = getConfig().paths.sqlite;
    store.projection(def(2));
    await store.caughtUp();
    assert.equal(resets, 1);
    assert.equal(store.readModel("notes").name, join(sqlite, "notes.v2.sqlite"));
    assert.deepEqual(store.query("notes", "SELECT DISTINCT v FROM notes"), [{ v: 2 }]);
    assert.equal(store.query("notes", "SELECT id FROM notes").length, 3);
    assert.ok(existsSync(join(sqlite, "notes.sqlite")));
    await store.close();
    store.projection(def(3));
    await store.caughtUp();
    assert.deepEqual(store.query("notes", "SELECT DISTINCT v FROM notes"), [{ v: 3 }]);
    assert.ok(!existsSync(join(sqlite, "notes.sqlite")));
    assert.ok(existsSync(join(sqlite, "notes.v2.sqlite")));

    await assert.rejects(store.rebuild("nope"), /no projection named "nope"/);
    await store.close();
    store.projection({ name: "plain", apply: () => {} });
    await assert.rejects(store.rebuild("plain"), /has no reset\(db\): it cannot be rebuilt/);
  } finally {
    await store.close();
    resetConfig();
  }
});
