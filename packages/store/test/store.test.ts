import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { openEventStore, removeEventStore, StoreCorruptError, StoreDiskFullError } from "../src/index.js";
import { sqliteBackend } from "./backends.js";
import { ev, storeConformance } from "./conformance/store.js";
import { tempDir } from "./helpers.js";

storeConformance(sqliteBackend);

describe("event store (sqlite only): files", () => {
  test("creates {directory}/{storeId}.sqlite in WAL mode with FULL sync", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: join(dir, "nested"), storeId: "plugin-a" });
    assert.equal(store.location, join(dir, "nested", "plugin-a.sqlite"));
    await store.append("s-1", [ev("a")]);
    const db = new Database(store.location, { readonly: true });
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    db.close();
    for (let i = 0; i < 50; i++) await store.append("s-1", [ev("b")]);
    assert.ok(statSync(`${store.location}-wal`).size > 0);
    await store.close();
    // close() checkpointed the WAL into the main file.
    assert.ok(!existsSync(`${store.location}-wal`) || statSync(`${store.location}-wal`).size === 0);
  });

  test("removeEventStore deletes a closed store's files and refuses an open one", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "gone" });
    await store.append("s", [ev("x")]);
    assert.throws(() => removeEventStore(dir, "gone"), /close it before removing it/);
    await store.close();
    removeEventStore(dir, "gone");
    assert.deepEqual(readdirSync(dir), []);
    const fresh = openEventStore({ directory: dir, storeId: "gone" });
    assert.equal(await fresh.headPosition(), 0);
    await fresh.close();
  });
});

describe("event store (sqlite only): file errors", () => {
  test("a non-SQLite file gives StoreCorruptError naming the file", () => {
    const dir = tempDir();
    const file = join(dir, "bad.sqlite");
    writeFileSync(file, "this is not a database at all, just some text that is long enough");
    assert.throws(
      () => openEventStore({ directory: dir, storeId: "bad" }),
      (e: unknown) => e instanceof StoreCorruptError && e.file === file && e.message.includes(file),
    );
  });

  test("a damaged SQLite file gives StoreCorruptError", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "dmg" });
    for (let i = 0; i < 200; i++) await store.append(`s-${i}`, [ev("x", { pad: "y".repeat(200) })]);
    await store.close();
    // Keep the header, overwrite the pages after the first with garbage.
    const { openSync, writeSync, closeSync, statSync } = await import("node:fs");
    const size = statSync(store.location).size;
    const fd = openSync(store.location, "r+");
    writeSync(fd, Buffer.alloc(size - 4096, 0xa5), 0, size - 4096, 4096);
    closeSync(fd);
    assert.throws(() => openEventStore({ directory: dir, storeId: "dmg" }), StoreCorruptError);
  });

  test("disk full (SQLITE_FULL via a size quota) fails the append cleanly; the store stays usable", async () => {
    const dir = tempDir();
    // max_page_count makes SQLite hit a real SQLITE_FULL, the same code path as ENOSPC on a full disk.
    const store = openEventStore({ directory: dir, storeId: "full", maxSizeBytes: 96 * 1024 });
    const acked: number[] = [];
    let failure: unknown;
    for (let i = 0; i < 1000; i++) {
      try {
        await store.append("s", [ev("blob", { i, pad: "z".repeat(2000) })]);
        acked.push(i);
      } catch (e) {
        failure = e;
        break;
      }
    }
    assert.ok(failure instanceof StoreDiskFullError, `expected StoreDiskFullError, got ${String(failure)}`);
    assert.ok(acked.length > 5);
    // Still usable: reads work, the failed append left nothing, positions stay gapless.
    const all = await store.readAll();
    assert.equal(all.length, acked.length);
    assert.equal(await store.headPosition(), acked.length);
    await store.close();
    const bigger = openEventStore({ directory: dir, storeId: "full", maxSizeBytes: 10 * 1024 * 1024 });
    const r = await bigger.append("s", [ev("blob", { i: -1 })], { expectedRevision: acked.length - 1 });
    assert.equal(r.position, acked.length + 1);
    const db = new Database(bigger.location, { readonly: true });
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    db.close();
    await bigger.close();
  });
});
