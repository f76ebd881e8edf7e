import assert from "node:assert/strict";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import {
  DuplicateEventIdError,
  InvalidArgumentError,
  openEventStore,
  type RecordedEvent,
  removeEventStore,
  StoreClosedError,
  StoreCorruptError,
  StoreDiskFullError,
  WrongExpectedRevision,
} from "../src/index.js";
import { sleep, tempDir, waitFor } from "./helpers.js";

const ev = (type: string, data: unknown = {}, id?: string) => ({ type, data, ...(id ? { id } : {}) });

describe("event store: append and read", () => {
  test("creates {directory}/{storeId}.sqlite in WAL mode with FULL sync", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: join(dir, "nested"), storeId: "plugin-a" });
    assert.equal(store.file, join(dir, "nested", "plugin-a.sqlite"));
    store.append("s-1", [ev("a")]);
    const db = new Database(store.file, { readonly: true });
    assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
    db.close();
    for (let i = 0; i < 50; i++) store.append("s-1", [ev("b")]);
    assert.ok(statSync(`${store.file}-wal`).size > 0);
    await store.close();
    // close() checkpointed the WAL into the main file.
    assert.ok(!existsSync(`${store.file}-wal`) || statSync(`${store.file}-wal`).size === 0);
  });

  test("expected revision: any, no_stream, stream_exists, exact", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "rev" });
    // no_stream
    const r0 = store.append("acc-1", [ev("opened")], { expectedRevision: "no_stream" });
    assert.equal(r0.revision, 0);
    assert.equal(r0.position, 1);
    assert.throws(
      () => store.append("acc-1", [ev("opened")], { expectedRevision: "no_stream" }),
      (e: unknown) =>
        e instanceof WrongExpectedRevision && e.stream === "acc-1" && e.expected === "no_stream" && e.actual === 0,
    );
    // stream_exists
    assert.throws(
      () => store.append("acc-2", [ev("x")], { expectedRevision: "stream_exists" }),
      (e: unknown) => e instanceof WrongExpectedRevision && e.actual === -1,
    );
    assert.equal(store.append("acc-1", [ev("dep")], { expectedRevision: "stream_exists" }).revision, 1);
    // exact
    assert.equal(store.append("acc-1", [ev("dep"), ev("dep")], { expectedRevision: 1 }).revision, 3);
    assert.throws(
      () => store.append("acc-1", [ev("dep")], { expectedRevision: 1 }),
      (e: unknown) => e instanceof WrongExpectedRevision && e.expected === 1 && e.actual === 3,
    );
    assert.equal(store.append("acc-3", [ev("x")], { expectedRevision: -1 }).revision, 0);
    // any
    assert.equal(store.append("acc-1", [ev("dep")], { expectedRevision: "any" }).revision, 4);
    assert.equal(store.append("acc-4", [ev("dep")]).revision, 0);
    assert.equal(store.streamRevision("acc-1"), 4);
    assert.equal(store.streamRevision("nope"), -1);
    // a failed append wrote nothing
    assert.equal(store.headPosition(), 7);
    assert.throws(() => store.append("acc-1", [ev("x")], { expectedRevision: "bogus" as never }), InvalidArgumentError);
    await store.close();
  });

  test("idempotent event ids: re-append returns the original result and writes nothing", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "idem" });
    const ids = ["0b8a8b77-1a0b-4a5e-9c0c-000000000001", "0b8a8b77-1a0b-4a5e-9c0c-000000000002"];
    const first = store.append("s", [ev("a", { n: 1 }, ids[0]), ev("b", { n: 2 }, ids[1])], {
      expectedRevision: "no_stream",
    });
    store.append("other", [ev("z")]);
    assert.equal(first.duplicate, false);
    // Same batch again, even with a now-stale expected revision: original result, nothing written.
    const again = store.append("s", [ev("a", { n: 1 }, ids[0]), ev("b", { n: 2 }, ids[1])], {
      expectedRevision: "no_stream",
    });
    assert.equal(again.duplicate, true);
    assert.equal(again.revision, first.revision);
    assert.equal(again.position, first.position);
    assert.deepEqual(
      again.events.map((e) => [e.id, e.position, e.revision]),
      first.events.map((e) => [e.id, e.position, e.revision]),
    );
    assert.equal(store.headPosition(), 3);
    // A batch mixing stored and new ids is refused as a whole.
    assert.throws(
      () => store.append("s", [ev("a", {}, ids[0]), ev("c", {}, "0b8a8b77-1a0b-4a5e-9c0c-000000000003")]),
      (e: unknown) => e instanceof DuplicateEventIdError && /mixes 1 already-stored/.test(e.message),
    );
    // The same id in another stream is refused too.
    assert.throws(() => store.append("s2", [ev("a", {}, ids[0])]), DuplicateEventIdError);
    assert.throws(() => store.append("s", [ev("a", {}, "dup"), ev("b", {}, "dup")]), InvalidArgumentError);
    assert.equal(store.headPosition(), 3);
    assert.equal(store.getEvent(ids[1])?.type, "b");
    assert.equal(store.getEvent("missing"), null);
    await store.close();
  });

  test("read stream forward/backward, $all with filters, gapless positions", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "read" });
    for (let i = 0; i < 10; i++) {
      store.append(`order-${i % 2}`, [ev(i % 3 === 0 ? "created" : "updated", { i })]);
      store.append(`user-${i}`, [ev("seen", { i })]);
    }
    // A conflicting append in the middle must not leave a gap.
    assert.throws(() => store.append("order-0", [ev("x")], { expectedRevision: 0 }), WrongExpectedRevision);
    store.append("order-0", [ev("last")]);
    const all = store.readAll();
    assert.equal(all.length, 21);
    assert.deepEqual(
      all.map((e) => e.position),
      Array.from({ length: 21 }, (_, i) => i + 1),
    );
    const fwd = store.readStream("order-0", { fromRevision: 2, limit: 2 });
    assert.deepEqual(
      fwd.map((e) => [e.revision, (e.data as { i: number }).i]),
      [
        [2, 4],
        [3, 6],
      ],
    );
    const back = store.readStream("order-0", { direction: "backward", limit: 3 });
    assert.deepEqual(
      back.map((e) => e.revision),
      [5, 4, 3],
    );
    assert.deepEqual(
      store.readStream("order-0", { direction: "backward", fromRevision: 1 }).map((e) => e.revision),
      [1, 0],
    );
    assert.equal(store.readStream("nope").length, 0);
    const after = store.readAll({ afterPosition: 18 });
    assert.deepEqual(
      after.map((e) => e.position),
      [19, 20, 21],
    );
    assert.equal(store.readAll({ afterPosition: 5, limit: 2 }).length, 2);
    assert.ok(store.readAll({ types: ["created"] }).every((e) => e.type === "created"));
    assert.equal(store.readAll({ types: ["created"] }).length, 4);
    assert.equal(store.readAll({ types: ["created", "last"] }).length, 5);
    assert.equal(store.readAll({ streamPrefix: "user-" }).length, 10);
    assert.equal(store.readAll({ streamPrefix: "order-", types: ["updated"] }).length, 6);
    const lastTwo = store.readAll({ direction: "backward", limit: 2 });
    assert.deepEqual(
      lastTwo.map((e) => e.position),
      [21, 20],
    );
    assert.deepEqual(
      store.readAll({ direction: "backward", beforePosition: 3 }).map((e) => e.position),
      [2, 1],
    );
    const e0 = all[0];
    assert.match(e0.id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(e0.createdAt)));
    assert.deepEqual(e0.metadata, {});
    await store.close();
  });

  test("snapshots: save and load the latest", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "snap" });
    assert.equal(store.loadSnapshot("s"), null);
    store.saveSnapshot("s", 4, { total: 10 });
    store.saveSnapshot("s", 9, { total: 20 });
    store.saveSnapshot("s", 7, { total: 15 }); // older: ignored
    assert.deepEqual(store.loadSnapshot("s"), { stream: "s", revision: 9, state: { total: 20 }, version: 0 });
    store.saveSnapshot("s", 3, { shape: 2 }, 2); // another version replaces it even at a lower revision
    assert.deepEqual(store.loadSnapshot("s"), { stream: "s", revision: 3, state: { shape: 2 }, version: 2 });
    store.saveSnapshot("s", 9, { total: 20 });
    await store.close();
    const reopened = openEventStore({ directory: store.file.replace(/\/snap\.sqlite$/, ""), storeId: "snap" });
    assert.equal(reopened.loadSnapshot<{ total: number }>("s")?.state.total, 20);
    await reopened.close();
  });

  test("removeEventStore deletes a closed store's files and refuses an open one", async () => {
    const dir = tempDir();
    const store = openEventStore({ directory: dir, storeId: "gone" });
    store.append("s", [ev("x")]);
    assert.throws(() => removeEventStore(dir, "gone"), /close it before removing it/);
    await store.close();
    removeEventStore(dir, "gone");
    assert.deepEqual(readdirSync(dir), []);
    const fresh = openEventStore({ directory: dir, storeId: "gone" });
    assert.equal(fresh.headPosition(), 0);
    await fresh.close();
  });

  test("several stores per process, each its own file", async () => {
    const dir = tempDir();
    const a = openEventStore({ directory: dir, storeId: "a" });
    const b = openEventStore({ directory: dir, storeId: "b", durability: "NORMAL" });
    a.append("s", [ev("x")]);
    assert.equal(a.headPosition(), 1);
    assert.equal(b.headPosition(), 0);
    await Promise.all([a.close(), b.close()]);
  });
});

describe("event store: errors", () => {
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
    for (let i = 0; i < 200; i++) store.append(`s-${i}`, [ev("x", { pad: "y".repeat(200) })]);
    await store.close();
    // Keep the header, overwrite the pages after the first with garbage.
    const { openSync, writeSync, closeSync, statSync } = await import("node:fs");
    const size = statSync(store.file).size;
    const fd = openSync(store.file, "r+");
    writeSync(fd, Buffer.alloc(size - 4096, 0xa5), 0, size - 4096, 4096);
    closeSync(fd);
    assert.throws(() => openEventStore({ directory: dir, storeId: "dmg" }), StoreCorruptError);
  });

  test("a closed store rejects every call with StoreClosedError", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "closed" });
    store.append("s", [ev("x")]);
    await store.close();
    await store.close(); // idempotent
    const calls: (() => unknown)[] = [
      () => store.append("s", [ev("x")]),
      () => store.readStream("s"),
      () => store.readAll(),
      () => store.streamRevision("s"),
      () => store.headPosition(),
      () => store.getEvent("x"),
      () => store.readCheckpoint("x"),
      () => store.subscribe({ handler: () => {} }),
      () => store.saveSnapshot("s", 0, {}),
      () => store.loadSnapshot("s"),
    ];
    for (const call of calls) assert.throws(call, StoreClosedError);
  });

  test("disk full (SQLITE_FULL via a size quota) fails the append cleanly; the store stays usable", async () => {
    const dir = tempDir();
    // max_page_count makes SQLite hit a real SQLITE_FULL, the same code path as ENOSPC on a full disk.
    const store = openEventStore({ directory: dir, storeId: "full", maxSizeBytes: 96 * 1024 });
    const acked: number[] = [];
    let failure: unknown;
    for (let i = 0; i < 1000; i++) {
      try {
        store.append("s", [ev("blob", { i, pad: "z".repeat(2000) })]);
        acked.push(i);
      } catch (e) {
        failure = e;
        break;
      }
    }
    assert.ok(failure instanceof StoreDiskFullError, `expected StoreDiskFullError, got ${String(failure)}`);
    assert.ok(acked.length > 5);
    // Still usable: reads work, the failed append left nothing, positions stay gapless.
    const all = store.readAll();
    assert.equal(all.length, acked.length);
    assert.equal(store.headPosition(), acked.length);
    await store.close();
    const bigger = openEventStore({ directory: dir, storeId: "full", maxSizeBytes: 10 * 1024 * 1024 });
    const r = bigger.append("s", [ev("blob", { i: -1 })], { expectedRevision: acked.length - 1 });
    assert.equal(r.position, acked.length + 1);
    const db = new Database(bigger.file, { readonly: true });
    assert.equal(db.pragma("integrity_check", { simple: true }), "ok");
    db.close();
    await bigger.close();
  });

  test("bad arguments are typed errors", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "args" });
    assert.throws(() => store.append("", [ev("x")]), InvalidArgumentError);
    assert.throws(() => store.append("$all", [ev("x")]), InvalidArgumentError);
    assert.throws(() => store.append("s", [{ type: "", data: 1 }]), InvalidArgumentError);
    assert.throws(() => store.append("s", [{ type: "x", data: { n: 1n } }]), InvalidArgumentError);
    assert.throws(() => openEventStore({ directory: tempDir(), storeId: "../evil" }), InvalidArgumentError);
    assert.equal(store.headPosition(), 0);
    await store.close();
  });
});

describe("event store: subscriptions", () => {
  test("catch-up then live, to $all and to one stream, with filters", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "sub" });
    store.append("a-1", [ev("x", { n: 1 }), ev("y", { n: 2 })]);
    store.append("b-1", [ev("x", { n: 3 })]);
    const all: number[] = [];
    const onlyA: number[] = [];
    const onlyX: number[] = [];
    const s1 = store.subscribe({ handler: (e) => void all.push(e.position) });
    const s2 = store.subscribe({ stream: "a-1", handler: (e) => void onlyA.push(e.revision) });
    const s3 = store.subscribe({ types: ["x"], streamPrefix: "b-", handler: (e) => void onlyX.push(e.position) });
    await Promise.all([s1.caughtUp(), s2.caughtUp(), s3.caughtUp()]);
    assert.deepEqual(all, [1, 2, 3]);
    assert.deepEqual(onlyA, [0, 1]);
    assert.deepEqual(onlyX, [3]);
    store.append("a-1", [ev("y", { n: 4 })]);
    store.append("b-1", [ev("x", { n: 5 })]);
    await Promise.all([s1.caughtUp(5), s2.caughtUp(5), s3.caughtUp(5)]);
    assert.deepEqual(all, [1, 2, 3, 4, 5]);
    assert.deepEqual(onlyA, [0, 1, 2]);
    assert.deepEqual(onlyX, [3, 5]);
    assert.equal(s3.position, 5);
    await Promise.all([s1.stop(), s2.stop(), s3.stop()]);
    await store.close();
  });

  test("durable named checkpoint: resumes after the last handled event", async () => {
    const dir = tempDir();
    let store = openEventStore({ directory: dir, storeId: "dur" });
    for (let i = 0; i < 5; i++) store.append("s", [ev("x", { i })]);
    const seen: number[] = [];
    let sub = store.subscribe({ name: "counter", handler: (e) => void seen.push(e.position) });
    await sub.caughtUp();
    assert.throws(() => store.subscribe({ name: "counter", handler: () => {} }), InvalidArgumentError);
    await sub.stop();
    assert.equal(store.readCheckpoint("counter"), 5);
    await store.close();
    store = openEventStore({ directory: dir, storeId: "dur" });
    store.append("s", [ev("x", { i: 5 })]);
    sub = store.subscribe({ name: "counter", handler: (e) => void seen.push(e.position) });
    await sub.caughtUp();
    assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
    await store.close(); // stops the subscription too
    await assert.rejects(sub.caughtUp(100));
  });

  test("a throwing handler retries the same event; the checkpoint advances only after success", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "retry" });
    store.append("s", [ev("a"), ev("b"), ev("c")]);
    const calls: string[] = [];
    const errors: number[] = [];
    let failures = 3;
    const sub = store.subscribe({
      name: "flaky",
      retryDelayMs: 5,
      onError: (_e, event, attempt) => void errors.push(event.position * 100 + attempt),
      handler: (e) => {
        calls.push(e.type);
        if (e.type === "b" && failures-- > 0) {
          assert.equal(store.readCheckpoint("flaky"), 1); // a handled, b not yet
          throw new Error("boom");
        }
      },
    });
    await sub.caughtUp();
    assert.deepEqual(calls, ["a", "b", "b", "b", "b", "c"]);
    assert.deepEqual(errors, [201, 202, 203]);
    assert.equal(store.readCheckpoint("flaky"), 3);
    // onError can skip a poison event.
    store.append("s", [ev("poison"), ev("d")]);
    const sub2 = store.subscribe({
      afterPosition: 3,
      retryDelayMs: 1,
      onError: (_e, _ev, attempt) => (attempt >= 2 ? "skip" : undefined),
      handler: (e) => {
        if (e.type === "poison") throw new Error("always");
        calls.push(e.type);
      },
    });
    await sub2.caughtUp();
    assert.equal(calls.at(-1), "d");
    await Promise.all([sub.stop(), sub2.stop()]);
    await store.close();
  });

  test("a handler may stop its own subscription (no deadlock); the handled event is checkpointed", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "selfstop" });
    store.append("s", [ev("a"), ev("b"), ev("c")]);
    const seen: string[] = [];
    let stopped: Promise<void> | undefined;
    const sub = store.subscribe({
      name: "once",
      handler: async (e) => {
        seen.push(e.type);
        if (e.type === "b") {
          stopped = sub.stop();
          await stopped;
        }
      },
    });
    await waitFor(() => stopped !== undefined);
    await stopped;
    await sleep(20);
    assert.deepEqual(seen, ["a", "b"]);
    assert.equal(store.readCheckpoint("once"), 2);
    await store.close();
  });

  test("async handlers are awaited in order", async () => {
    const store = openEventStore({ directory: tempDir(), storeId: "async" });
    const seen: RecordedEvent[] = [];
    const sub = store.subscribe({
      handler: async (e) => {
        await sleep(Math.random() * 5);
        seen.push(e);
      },
    });
    for (let i = 0; i < 20; i++) store.append(`s-${i % 3}`, [ev("x", { i })]);
    await waitFor(() => seen.length === 20);
    assert.deepEqual(
      seen.map((e) => (e.data as { i: number }).i),
      Array.from({ length: 20 }, (_, i) => i),
    );
    await sub.stop();
    await store.close();
  });
});
