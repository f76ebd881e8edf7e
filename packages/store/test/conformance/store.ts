/**
 * The event-store conformance suite: the same tests for every backend (run by store.test.ts on SQLite and by
 * store-postgres.test.ts on PostgreSQL).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  DuplicateEventIdError,
  InvalidArgumentError,
  type RecordedEvent,
  StoreClosedError,
  WrongExpectedRevision,
} from "../../src/index.js";
import type { Backend } from "../backends.js";
import { sleep, waitFor } from "../helpers.js";

export const ev = (type: string, data: unknown = {}, id?: string) => ({ type, data, ...(id ? { id } : {}) });

export function storeConformance(backend: Backend): void {
  describe(`event store (${backend.name}): append and read`, () => {
    test("expected revision: any, no_stream, stream_exists, exact", async () => {
      const store = backend.place().open("rev");
      const r0 = await store.append("acc-1", [ev("opened")], { expectedRevision: "no_stream" });
      assert.equal(r0.revision, 0);
      assert.equal(r0.position, 1);
      await assert.rejects(
        store.append("acc-1", [ev("opened")], { expectedRevision: "no_stream" }),
        (e: unknown) =>
          e instanceof WrongExpectedRevision && e.stream === "acc-1" && e.expected === "no_stream" && e.actual === 0,
      );
      await assert.rejects(
        store.append("acc-2", [ev("x")], { expectedRevision: "stream_exists" }),
        (e: unknown) => e instanceof WrongExpectedRevision && e.actual === -1,
      );
      assert.equal((await store.append("acc-1", [ev("dep")], { expectedRevision: "stream_exists" })).revision, 1);
      assert.equal((await store.append("acc-1", [ev("dep"), ev("dep")], { expectedRevision: 1 })).revision, 3);
      await assert.rejects(
        store.append("acc-1", [ev("dep")], { expectedRevision: 1 }),
        (e: unknown) => e instanceof WrongExpectedRevision && e.expected === 1 && e.actual === 3,
      );
      assert.equal((await store.append("acc-3", [ev("x")], { expectedRevision: -1 })).revision, 0);
      assert.equal((await store.append("acc-1", [ev("dep")], { expectedRevision: "any" })).revision, 4);
      assert.equal((await store.append("acc-4", [ev("dep")])).revision, 0);
      assert.equal(await store.streamRevision("acc-1"), 4);
      assert.equal(await store.streamRevision("nope"), -1);
      // a failed append wrote nothing
      assert.equal(await store.headPosition(), 7);
      await assert.rejects(
        store.append("acc-1", [ev("x")], { expectedRevision: "bogus" as never }),
        InvalidArgumentError,
      );
      // an empty append checks the revision and writes nothing
      const empty = await store.append("acc-1", [], { expectedRevision: 4 });
      assert.deepEqual([empty.revision, empty.events.length, empty.duplicate], [4, 0, false]);
      assert.equal(await store.headPosition(), 7);
      await store.close();
    });

    test("idempotent event ids: re-append returns the original result and writes nothing", async () => {
      const store = backend.place().open("idem");
      const ids = ["0b8a8b77-1a0b-4a5e-9c0c-000000000001", "0b8a8b77-1a0b-4a5e-9c0c-000000000002"];
      const first = await store.append("s", [ev("a", { n: 1 }, ids[0]), ev("b", { n: 2 }, ids[1])], {
        expectedRevision: "no_stream",
      });
      await store.append("other", [ev("z")]);
      assert.equal(first.duplicate, false);
      // Same batch again, even with a now-stale expected revision: original result, nothing written.
      const again = await store.append("s", [ev("a", { n: 1 }, ids[0]), ev("b", { n: 2 }, ids[1])], {
        expectedRevision: "no_stream",
      });
      assert.equal(again.duplicate, true);
      assert.equal(again.revision, first.revision);
      assert.equal(again.position, first.position);
      assert.deepEqual(
        again.events.map((e) => [e.id, e.position, e.revision, e.data]),
        first.events.map((e) => [e.id, e.position, e.revision, e.data]),
      );
      assert.equal(await store.headPosition(), 3);
      // A batch mixing stored and new ids is refused as a whole.
      await assert.rejects(
        store.append("s", [ev("a", {}, ids[0]), ev("c", {}, "0b8a8b77-1a0b-4a5e-9c0c-000000000003")]),
        (e: unknown) => e instanceof DuplicateEventIdError && /mixes 1 already-stored/.test(e.message),
      );
      // The same id in another stream is refused too.
      await assert.rejects(store.append("s2", [ev("a", {}, ids[0])]), DuplicateEventIdError);
      await assert.rejects(store.append("s", [ev("a", {}, "dup"), ev("b", {}, "dup")]), InvalidArgumentError);
      assert.equal(await store.headPosition(), 3);
      assert.equal((await store.getEvent(ids[1]))?.type, "b");
      assert.equal(await store.getEvent("missing"), null);
      await store.close();
    });

    test("read stream forward/backward, $all with filters, gapless positions", async () => {
      const store = backend.place().open("read");
      for (let i = 0; i < 10; i++) {
        await store.append(`order-${i % 2}`, [ev(i % 3 === 0 ? "created" : "updated", { i })]);
        await store.append(`user-${i}`, [ev("seen", { i })]);
      }
      // A conflicting append in the middle must not leave a gap.
      await assert.rejects(store.append("order-0", [ev("x")], { expectedRevision: 0 }), WrongExpectedRevision);
      await store.append("order-0", [ev("last")]);
      const all = await store.readAll();
      assert.equal(all.length, 21);
      assert.deepEqual(
        all.map((e) => e.position),
        Array.from({ length: 21 }, (_, i) => i + 1),
      );
      const fwd = await store.readStream("order-0", { fromRevision: 2, limit: 2 });
      assert.deepEqual(
        fwd.map((e) => [e.revision, (e.data as { i: number }).i]),
        [
          [2, 4],
          [3, 6],
        ],
      );
      const back = await store.readStream("order-0", { direction: "backward", limit: 3 });
      assert.deepEqual(
        back.map((e) => e.revision),
        [5, 4, 3],
      );
      assert.deepEqual(
        (await store.readStream("order-0", { direction: "backward", fromRevision: 1 })).map((e) => e.revision),
        [1, 0],
      );
      assert.equal((await store.readStream("nope")).length, 0);
      assert.deepEqual(
        (await store.readAll({ afterPosition: 18 })).map((e) => e.position),
        [19, 20, 21],
      );
      assert.equal((await store.readAll({ afterPosition: 5, limit: 2 })).length, 2);
      assert.equal((await store.readAll({ limit: 0 })).length, 0);
      assert.ok((await store.readAll({ types: ["created"] })).every((e) => e.type === "created"));
      assert.equal((await store.readAll({ types: ["created"] })).length, 4);
      assert.equal((await store.readAll({ types: ["created", "last"] })).length, 5);
      assert.equal((await store.readAll({ streamPrefix: "user-" })).length, 10);
      assert.equal((await store.readAll({ streamPrefix: "order-", types: ["updated"] })).length, 6);
      assert.deepEqual(
        (await store.readAll({ direction: "backward", limit: 2 })).map((e) => e.position),
        [21, 20],
      );
      assert.deepEqual(
        (await store.readAll({ direction: "backward", beforePosition: 3 })).map((e) => e.position),
        [2, 1],
      );
      await assert.rejects(store.readAll({ limit: -2 }), InvalidArgumentError);
      const e0 = all[0];
      assert.match(e0.id, /^[0-9a-f-]{36}$/);
      assert.ok(!Number.isNaN(Date.parse(e0.createdAt)));
      assert.deepEqual(e0.metadata, {});
      // Data and metadata come back as stored (nested values, nulls, unicode).
      const rich = { s: "h\u00e9llo \u{1F600}", n: [1, 2.5, null], o: { deep: { x: true } } };
      const r = await store.append("rich", [{ type: "r", data: rich, metadata: { who: "me", n: 1 } }]);
      const got = await store.getEvent(r.events[0].id);
      assert.deepEqual(got?.data, rich);
      assert.deepEqual(got?.metadata, { who: "me", n: 1 });
      assert.equal(got?.createdAt, r.events[0].createdAt);
      await store.close();
    });

    test("snapshots: save and load the latest", async () => {
      const place = backend.place();
      const store = place.open("snap");
      assert.equal(await store.loadSnapshot("s"), null);
      await store.saveSnapshot("s", 4, { total: 10 });
      await store.saveSnapshot("s", 9, { total: 20 });
      await store.saveSnapshot("s", 7, { total: 15 }); // older: ignored
      assert.deepEqual(await store.loadSnapshot("s"), { stream: "s", revision: 9, state: { total: 20 }, version: 0 });
      await store.saveSnapshot("s", 3, { shape: 2 }, 2); // another version replaces it even at a lower revision
      assert.deepEqual(await store.loadSnapshot("s"), { stream: "s", revision: 3, state: { shape: 2 }, version: 2 });
      await store.saveSnapshot("s", 9, { total: 20 });
      await assert.rejects(store.saveSnapshot("s", -1, {}), InvalidArgumentError);
      await store.close();
      const reopened = place.open("snap");
      assert.equal((await reopened.loadSnapshot<{ total: number }>("s"))?.state.total, 20);
      await reopened.close();
    });

    test("several stores side by side, each with its own positions", async () => {
      const place = backend.place();
      const a = place.open("a");
      const b = place.open("b", { durability: "NORMAL" });
      await a.append("s", [ev("x")]);
      assert.equal(await a.headPosition(), 1);
      assert.equal(await b.headPosition(), 0);
      assert.equal((await b.append("s", [ev("y")])).position, 1);
      assert.equal((await a.readStream("s")).length, 1);
      await Promise.all([a.close(), b.close()]);
    });

    test("concurrent appends through two connections: one winner per revision, gapless positions", async () => {
      const place = backend.place();
      const a = place.open("two");
      const b = place.open("two");
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          (i % 2 ? a : b).append("c", [ev("x", { i })], { expectedRevision: "no_stream" }),
        ),
      );
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
      assert.ok(results.every((r) => r.status === "fulfilled" || (r.reason as Error) instanceof WrongExpectedRevision));
      await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).append(`s-${i % 3}`, [ev("y")])));
      const all = await a.readAll();
      assert.deepEqual(
        all.map((e) => e.position),
        Array.from({ length: 31 }, (_, i) => i + 1),
      );
      await Promise.all([a.close(), b.close()]);
    });
  });

  describe(`event store (${backend.name}): errors`, () => {
    test("a closed store rejects every call with StoreClosedError", async () => {
      const store = backend.place().open("closed");
      await store.append("s", [ev("x")]);
      await store.close();
      await store.close(); // idempotent
      const calls: (() => Promise<unknown>)[] = [
        () => store.append("s", [ev("x")]),
        () => store.readStream("s"),
        () => store.readAll(),
        () => store.streamRevision("s"),
        () => store.headPosition(),
        () => store.getEvent("x"),
        () => store.readCheckpoint("x"),
        () => store.saveSnapshot("s", 0, {}),
        () => store.loadSnapshot("s"),
        () => store.ready(),
      ];
      for (const call of calls) await assert.rejects(call(), StoreClosedError);
      assert.throws(() => store.subscribe({ handler: () => {} }), StoreClosedError);
    });

    test("bad arguments are typed errors", async () => {
      const place = backend.place();
      const store = place.open("args");
      await assert.rejects(store.append("", [ev("x")]), InvalidArgumentError);
      await assert.rejects(store.append("$all", [ev("x")]), InvalidArgumentError);
      await assert.rejects(store.append("s", [{ type: "", data: 1 }]), InvalidArgumentError);
      await assert.rejects(store.append("s", [{ type: "x", data: { n: 1n } }]), InvalidArgumentError);
      await assert.rejects(store.append("s", "nope" as never), InvalidArgumentError);
      assert.throws(() => place.open("../evil"), InvalidArgumentError);
      assert.throws(() => store.subscribe({} as never), InvalidArgumentError);
      assert.equal(await store.headPosition(), 0);
      await store.close();
    });
  });

  describe(`event store (${backend.name}): subscriptions`, () => {
    test("catch-up then live, to $all and to one stream, with filters", async () => {
      const store = backend.place().open("sub");
      await store.append("a-1", [ev("x", { n: 1 }), ev("y", { n: 2 })]);
      await store.append("b-1", [ev("x", { n: 3 })]);
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
      await store.append("a-1", [ev("y", { n: 4 })]);
      await store.append("b-1", [ev("x", { n: 5 })]);
      await Promise.all([s1.caughtUp(5), s2.caughtUp(5), s3.caughtUp(5)]);
      assert.deepEqual(all, [1, 2, 3, 4, 5]);
      assert.deepEqual(onlyA, [0, 1, 2]);
      assert.deepEqual(onlyX, [3, 5]);
      assert.equal(s3.position, 5);
      await Promise.all([s1.stop(), s2.stop(), s3.stop()]);
      await store.close();
    });

    test("live: appends through another connection to the same store wake the subscription", async () => {
      const place = backend.place();
      const store = place.open("live2");
      const other = place.open("live2");
      const seen: number[] = [];
      const sub = store.subscribe({ handler: (e) => void seen.push((e.data as { i: number }).i) });
      await sub.caughtUp();
      for (let i = 0; i < 10; i++) await other.append(`o-${i % 2}`, [ev("x", { i })]);
      await waitFor(() => seen.length === 10, 10_000, "10 events from the other connection");
      assert.deepEqual(
        seen,
        Array.from({ length: 10 }, (_, i) => i),
      );
      await sub.stop();
      await Promise.all([store.close(), other.close()]);
    });

    test("durable named checkpoint: resumes after the last handled event", async () => {
      const place = backend.place();
      let store = place.open("dur");
      for (let i = 0; i < 5; i++) await store.append("s", [ev("x", { i })]);
      const seen: number[] = [];
      let sub = store.subscribe({ name: "counter", handler: (e) => void seen.push(e.position) });
      await sub.caughtUp();
      assert.throws(() => store.subscribe({ name: "counter", handler: () => {} }), InvalidArgumentError);
      await sub.stop();
      assert.equal(await store.readCheckpoint("counter"), 5);
      await store.close();
      store = place.open("dur");
      await store.append("s", [ev("x", { i: 5 })]);
      sub = store.subscribe({ name: "counter", handler: (e) => void seen.push(e.position) });
      await sub.caughtUp();
      assert.deepEqual(seen, [1, 2, 3, 4, 5, 6]);
      // A named stream subscription resumes at the right revision too.
      const revs: number[] = [];
      let one = store.subscribe({ name: "one", stream: "s", handler: (e) => void revs.push(e.revision) });
      await one.caughtUp();
      await one.stop();
      await store.append("s", [ev("x", { i: 6 })]);
      one = store.subscribe({ name: "one", stream: "s", handler: (e) => void revs.push(e.revision) });
      await one.caughtUp();
      assert.deepEqual(revs, [0, 1, 2, 3, 4, 5, 6]);
      await store.close(); // stops the subscriptions too
      await assert.rejects(sub.caughtUp(100));
    });

    test("a throwing handler retries the same event; the checkpoint advances only after success", async () => {
      const store = backend.place().open("retry");
      await store.append("s", [ev("a"), ev("b"), ev("c")]);
      const calls: string[] = [];
      const errors: number[] = [];
      const checkpointsSeen: (number | null)[] = [];
      let failures = 3;
      const sub = store.subscribe({
        name: "flaky",
        retryDelayMs: 5,
        onError: (_e, event, attempt) => void errors.push(event.position * 100 + attempt),
        handler: async (e) => {
          calls.push(e.type);
          if (e.type === "b" && failures-- > 0) {
            checkpointsSeen.push(await store.readCheckpoint("flaky")); // a handled, b not yet
            throw new Error("boom");
          }
        },
      });
      await sub.caughtUp();
      assert.deepEqual(calls, ["a", "b", "b", "b", "b", "c"]);
      assert.deepEqual(errors, [201, 202, 203]);
      assert.deepEqual(checkpointsSeen, [1, 1, 1]);
      assert.equal(await store.readCheckpoint("flaky"), 3);
      // onError can skip a poison event.
      await store.append("s", [ev("poison"), ev("d")]);
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
      const store = backend.place().open("selfstop");
      await store.append("s", [ev("a"), ev("b"), ev("c")]);
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
      assert.equal(await store.readCheckpoint("once"), 2);
      await store.close();
    });

    test("async handlers are awaited in order", async () => {
      const store = backend.place().open("async");
      const seen: RecordedEvent[] = [];
      const sub = store.subscribe({
        handler: async (e) => {
          await sleep(Math.random() * 5);
          seen.push(e);
        },
      });
      for (let i = 0; i < 20; i++) await store.append(`s-${i % 3}`, [ev("x", { i })]);
      await waitFor(() => seen.length === 20);
      assert.deepEqual(
        seen.map((e) => (e.data as { i: number }).i),
        Array.from({ length: 20 }, (_, i) => i),
      );
      await sub.stop();
      await store.close();
    });
  });
}
