/**
 * Group commit of the SQLite backend: the appends made in one event-loop turn commit in one write transaction
 * (one fsync), each in a savepoint of its own. Observed on the real WAL file: the frames a checkpoint reports.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MessageChannel } from "node:worker_threads";
import Database from "better-sqlite3";
import { openEventStore, StoreDiskFullError, WrongExpectedRevision } from "../src/index.js";
import { tempDir } from "./helpers.js";

const ev = (type: string, data: unknown, id?: string) => ({ type, data, ...(id ? { id } : {}) });

/** WAL frames written since the last checkpoint (a raw connection of its own; PASSIVE never blocks the store). */
function walFrames(file: string): number {
  const db = new Database(file);
  const [row] = db.pragma("wal_checkpoint(PASSIVE)") as { log: number }[];
  db.close();
  return row.log;
}

describe("sqlite group commit", () => {
  test("appends made together commit in one transaction: a fraction of the WAL frames of one commit each", async () => {
    const dir = tempDir();
    const together = openEventStore({ directory: dir, storeId: "together" });
    const apart = openEventStore({ directory: dir, storeId: "apart" });
    const n = 32;
    // Warm-up append on each (creates the first pages), then measure from a fresh checkpoint.
    await together.append("warm", [ev("w", {})]);
    await apart.append("warm", [ev("w", {})]);
    walFrames(together.location);
    walFrames(apart.location);
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => together.append(`task-${i}`, [ev("task_created_v1", { i })])),
    );
    for (let i = 0; i < n; i++) await apart.append(`task-${i}`, [ev("task_created_v1", { i })]);
    // Positions are gapless and in call order, each append has its own result.
    assert.deepEqual(
      results.map((r) => r.position),
      Array.from({ length: n }, (_, i) => i + 2),
    );
    assert.ok(results.every((r, i) => r.stream === `task-${i}` && r.revision === 0 && !r.duplicate));
    const framesTogether = walFrames(together.location);
    const framesApart = walFrames(apart.location);
    assert.ok(
      framesTogether * 4 < framesApart,
      `${n} appends together wrote ${framesTogether} WAL frames, one at a time ${framesApart}`,
    );
    assert.equal(await together.headPosition(), n + 1);
    await together.close();
    await apart.close();
  });

  test("appends made from separate message events of one turn (a worker's request batches) share the transaction", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "events" });
    const apart = openEventStore({ directory: dir, storeId: "apart" });
    await store.append("warm", [ev("w", {})]);
    await apart.append("warm", [ev("w", {})]);
    walFrames(store.location);
    walFrames(apart.location);
    // Each message event ends in a microtask checkpoint of its own: 16 messages delivered in one turn, one append
    // each, as the requests of several batches reach a plugin's worker.
    const n = 16;
    const { port1, port2 } = new MessageChannel();
    const appended: Promise<unknown>[] = [];
    const all = new Promise<void>((resolve) => {
      port2.on("message", (i: number) => {
        appended.push(store.append(`task-${i}`, [ev("task_created_v1", { i })]));
        if (appended.length === n) resolve();
      });
    });
    for (let i = 0; i < n; i++) port1.postMessage(i);
    await all;
    await Promise.all(appended);
    port1.close();
    for (let i = 0; i < n; i++) await apart.append(`task-${i}`, [ev("task_created_v1", { i })]);
    const framesTogether = walFrames(store.location);
    const framesApart = walFrames(apart.location);
    assert.ok(
      framesTogether * 4 < framesApart,
      `${n} appends from ${n} message events wrote ${framesTogether} WAL frames, one at a time ${framesApart}`,
    );
    await store.close();
    await apart.close();
  });

  test("a conflict or a duplicate in the group fails alone; the others commit", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "mixed" });
    await store.append("a", [ev("x", {}, "11111111-1111-4111-8111-111111111111")]);
    const outcomes = await Promise.allSettled([
      store.append("b", [ev("x", { n: 1 })]),
      store.append("a", [ev("x", { n: 2 })], { expectedRevision: "no_stream" }), // a exists: conflict
      store.append("c", [ev("x", { n: 3 })]),
      store.append("a", [ev("x", {}, "11111111-1111-4111-8111-111111111111")]), // same id again: duplicate
      store.append("b", [ev("x", { n: 4 })], { expectedRevision: 0 }), // sees the first append of the group
    ]);
    assert.equal(outcomes[0].status, "fulfilled");
    assert.equal(outcomes[1].status, "rejected");
    assert.ok((outcomes[1] as PromiseRejectedResult).reason instanceof WrongExpectedRevision);
    assert.equal(outcomes[2].status, "fulfilled");
    assert.equal(outcomes[3].status, "fulfilled");
    assert.equal((outcomes[3] as PromiseFulfilledResult<{ duplicate: boolean }>).value.duplicate, true);
    assert.equal(outcomes[4].status, "fulfilled");
    const all = await store.readAll();
    assert.deepEqual(
      all.map((e) => [e.position, e.stream, e.revision]),
      [
        [1, "a", 0],
        [2, "b", 0],
        [3, "c", 0],
        [4, "b", 1],
      ],
    );
    await store.close();
  });

  test("a group the disk cannot hold fails as a whole and leaves nothing; the store stays usable", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "full", maxSizeBytes: 96 * 1024 });
    await store.append("s", [ev("small", {})]);
    const pad = "z".repeat(4000);
    const outcomes = await Promise.allSettled(
      Array.from({ length: 40 }, (_, i) => store.append(`big-${i}`, [ev("blob", { i, pad })])),
    );
    const failed = outcomes.filter((o) => o.status === "rejected");
    assert.ok(failed.length > 0, "the quota was never hit");
    for (const f of failed) assert.ok((f as PromiseRejectedResult).reason instanceof StoreDiskFullError);
    // What was acknowledged is exactly what is stored, positions gapless.
    const acked = outcomes.filter((o) => o.status === "fulfilled").length;
    const all = await store.readAll();
    assert.equal(all.length, 1 + acked);
    assert.deepEqual(
      all.map((e) => e.position),
      Array.from({ length: all.length }, (_, i) => i + 1),
    );
    const r = await store.append("s", [ev("small", {})], { expectedRevision: 0 });
    assert.equal(r.position, all.length + 1);
    await store.close();
  });

  test("appends accepted right before close() are committed, not lost", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "closing" });
    const pending = Array.from({ length: 5 }, (_, i) => store.append(`s-${i}`, [ev("x", { i })]));
    const closed = store.close();
    const results = await Promise.all(pending);
    await closed;
    assert.equal(results.length, 5);
    const db = new Database(`${dir}/closing.sqlite`, { readonly: true });
    assert.equal((db.prepare("SELECT count(*) AS n FROM events").get() as { n: number }).n, 5);
    db.close();
  });
});
