import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  type AggregateDefinition,
  CommandRejected,
  ConcurrencyRetriesExhausted,
  createCqrs,
  deterministicUuid,
  type EventStore,
  eventIdForCommand,
  startProcessManager,
  startProjection,
} from "../../src/index.js";
import type { Backend } from "../backends.js";
import { account } from "../fixtures/account.js";
import { waitFor } from "../helpers.js";

/** The CQRS conformance suite (dispatch, snapshots, projections, process managers) on one backend. */
export function cqrsConformance(backend: Backend): void {
  describe(`cqrs (${backend.name}): dispatch`, () => {
    test("load + decide + append; rejections throw CommandRejected with code and details", async () => {
      const store = backend.place().open("cq");
      const cqrs = createCqrs(store);
      const r1 = await cqrs.dispatch(account, "a1", { type: "open_account_v1", data: { owner: "ann" } });
      assert.equal(r1.stream, "account-a1");
      assert.equal(r1.revision, 0);
      assert.deepEqual(r1.decided, [{ type: "account_opened_v1", data: { owner: "ann" } }]);
      assert.equal(r1.events[0].metadata.commandType, "open_account_v1");
      await cqrs.dispatch(account, "a1", { type: "deposit_v1", data: { amount: 30 } });
      const r3 = await cqrs.dispatch(account, "a1", { type: "withdraw_v1", data: { amount: 10 } });
      assert.equal(r3.revision, 2);
      assert.deepEqual(r3.state, { open: true, balance: 20, deposits: 1 });
      await assert.rejects(
        cqrs.dispatch(account, "a1", { type: "withdraw_v1", data: { amount: 100 } }),
        (e: unknown) =>
          e instanceof CommandRejected &&
          e.code === "insufficient_funds" &&
          e.rejectionCode === "insufficient_funds" &&
          (e.details as { balance: number }).balance === 20,
      );
      await assert.rejects(
        cqrs.dispatch(account, "a2", { type: "deposit_v1", data: { amount: 1 } }),
        (e: unknown) => e instanceof CommandRejected && e.code === "account_not_open",
      );
      assert.equal(await store.headPosition(), 3);
      assert.deepEqual((await cqrs.load(account, "a1")).state, { open: true, balance: 20, deposits: 1 });
      assert.equal((await cqrs.load(account, "zzz")).revision, -1);
      await store.close();
    });

    test("a command id makes dispatch idempotent (events ids derived from it)", async () => {
      const store = backend.place().open("cqid");
      const cqrs = createCqrs(store);
      const cmd = { id: "cmd-open-1", type: "open_account_v1" as const, data: { owner: "bob" } };
      const first = await cqrs.dispatch(account, "b", cmd);
      assert.equal(first.events[0].id, eventIdForCommand("cmd-open-1", 0));
      // Re-dispatch (e.g. after a crash before the reply): decide would now reject, but the stored result is returned.
      const again = await cqrs.dispatch(account, "b", cmd);
      assert.equal(again.duplicate, true);
      assert.equal(again.position, first.position);
      assert.equal(await store.headPosition(), 1);
      const dep = { id: "cmd-dep-1", type: "deposit_v1" as const, data: { amount: 5 } };
      await cqrs.dispatch(account, "b", dep);
      await cqrs.dispatch(account, "b", dep);
      await cqrs.dispatch(account, "b", dep);
      assert.equal((await cqrs.load(account, "b")).state.balance, 5);
      assert.equal(await store.headPosition(), 2);
      assert.match(deterministicUuid("x"), /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      assert.equal(deterministicUuid("x"), deterministicUuid("x"));
      assert.notEqual(deterministicUuid("x"), deterministicUuid("y"));
      await store.close();
    });

    test("retries on WrongExpectedRevision, bounded", async () => {
      const place = backend.place();
      const store = place.open("race");
      const rival = place.open("race"); // a second connection: another writer
      let decides = 0;
      let interfere = 2;
      const counter: AggregateDefinition<number> = {
        name: "counter",
        initialState: 0,
        evolve: (n) => n + 1,
        decide: () => {
          decides++;
          return [{ type: "incremented", data: {} }];
        },
      };
      // Another writer commits between our load (and decide) and our append.
      const racing = new Proxy(store, {
        get(target, key) {
          if (key === "append")
            return async (...args: Parameters<EventStore["append"]>) => {
              if (interfere-- > 0) await rival.append("counter-c", [{ type: "incremented", data: {} }]);
              return target.append(...args);
            };
          const value = Reflect.get(target, key, target);
          return typeof value === "function" ? value.bind(target) : value;
        },
      });
      const cqrs = createCqrs(racing);
      const r = await cqrs.dispatch(counter, "c", { type: "inc", data: {} });
      assert.equal(decides, 3);
      assert.equal(r.revision, 2);
      assert.equal(r.state, 3);
      interfere = 100;
      await assert.rejects(
        cqrs.dispatch(counter, "c", { type: "inc", data: {} }, { maxRetries: 3 }),
        (e: unknown) => e instanceof ConcurrencyRetriesExhausted && e.attempts === 4,
      );
      await rival.close();
      await store.close();
    });

    test("concurrent dispatches to one aggregate in one process queue up: none loses a race", async () => {
      const store = backend.place().open("queue");
      const cqrs = createCqrs(store);
      await cqrs.dispatch(account, "q", { type: "open_account_v1", data: { owner: "q" } });
      // maxRetries 0: a lost optimistic-concurrency race would fail the command.
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          cqrs.dispatch(account, "q", { type: "deposit_v1", data: { amount: i + 1 } }, { maxRetries: 0 }),
        ),
      );
      assert.deepEqual(
        results.map((r) => r.revision).sort((a, b) => a - b),
        Array.from({ length: 30 }, (_, i) => i + 1),
      );
      assert.equal((await cqrs.load(account, "q")).state.balance, (30 * 31) / 2);
      await store.close();
    });

    test("snapshots every N events are used by load and equal a full fold", async () => {
      const store = backend.place().open("snapagg");
      const snapAccount = { ...account, snapshotEvery: 3 };
      const cqrs = createCqrs(store);
      await cqrs.dispatch(snapAccount, "s", { type: "open_account_v1", data: { owner: "s" } });
      for (let i = 1; i <= 9; i++) await cqrs.dispatch(snapAccount, "s", { type: "deposit_v1", data: { amount: i } });
      const snap = await store.loadSnapshot<{ balance: number }>("account-s");
      assert.equal(snap?.revision, 8); // revisions 2, 5, 8 crossed multiples of 3 events
      const viaSnapshot = await cqrs.load(snapAccount, "s");
      const full = await cqrs.load(account, "s");
      assert.deepEqual(viaSnapshot.state, full.state);
      assert.equal(viaSnapshot.state.balance, 45);
      assert.equal(viaSnapshot.revision, 9);
      // Prove the snapshot is really read: doctor it and load again.
      await store.saveSnapshot("account-s", 9, { open: true, balance: 1000, deposits: 0 });
      assert.equal((await cqrs.load(snapAccount, "s")).state.balance, 1000);
      assert.equal((await cqrs.load(snapAccount, "s")).position, 10);
      // After an upgrade that changes the state shape (snapshotVersion bumped), the old snapshot is ignored.
      assert.equal((await cqrs.load({ ...snapAccount, snapshotVersion: 2 }, "s")).state.balance, 45);
      await store.close();
    });
  });

  describe(`cqrs (${backend.name}): projections`, () => {
    test("apply + checkpoint in one read-model transaction; strong consistency; resume without double-apply", async () => {
      const place = backend.place();
      const dir = place.dir;
      const store = place.open("proj");
      const cqrs = createCqrs(store);
      const readModel = join(dir, "sqlite", "balances.sqlite");
      const options = {
        name: "balances",
        readModel,
        types: ["account_opened_v1", "deposited_v1"],
        setup(db: import("better-sqlite3").Database) {
          db.exec(
            "CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, balance INTEGER NOT NULL, applied INTEGER)",
          );
        },
        apply(db: import("better-sqlite3").Database, e: import("../../src/index.js").RecordedEvent) {
          const id = e.stream.slice("account-".length);
          if (e.type === "account_opened_v1") db.prepare("INSERT INTO balances VALUES (?, 0, 1)").run(id);
          else {
            db.prepare("UPDATE balances SET balance = balance + ?, applied = applied + 1 WHERE id = ?").run(
              (e.data as { amount: number }).amount,
              id,
            );
          }
        },
      };
      let proj = startProjection(store, options);
      await cqrs.dispatch(account, "p", { type: "open_account_v1", data: { owner: "p" } }, { consistency: "strong" });
      const r = await cqrs.dispatch(
        account,
        "p",
        { type: "deposit_v1", data: { amount: 7 } },
        { consistency: "strong", projections: ["balances"] },
      );
      // Strong consistency: visible in the read model right after dispatch returns.
      assert.deepEqual(proj.db.prepare("SELECT balance, applied FROM balances WHERE id = 'p'").get(), {
        balance: 7,
        applied: 2,
      });
      assert.ok(proj.position >= r.position);
      await assert.rejects(
        cqrs.dispatch(
          account,
          "p",
          { type: "deposit_v1", data: { amount: 1 } },
          { consistency: "strong", projections: ["nope"] },
        ),
        /no running projection named nope/,
      );
      await proj.stop();
      // While stopped: more events. On restart it resumes from its checkpoint, applying each exactly once.
      for (let i = 0; i < 5; i++) await cqrs.dispatch(account, "p", { type: "deposit_v1", data: { amount: 10 } });
      proj = startProjection(store, options);
      await proj.caughtUp();
      assert.deepEqual(proj.db.prepare("SELECT balance, applied FROM balances WHERE id = 'p'").get(), {
        balance: 58,
        applied: 8,
      });
      await store.close(); // also stops the projection and closes its read model
      assert.equal(proj.db.open, false);
      await proj.stop(); // idempotent
    });
  });

  describe(`cqrs (${backend.name}): process managers`, () => {
    test("deterministic command ids: redelivery never duplicates; resumes from its checkpoint", async () => {
      const place = backend.place();
      let store = place.open("pm");
      let cqrs = createCqrs(store);
      // Welcome bonus: every opened account gets a deposit of 100.
      let crashOnce = true;
      const handled: string[] = [];
      const options = {
        name: "welcome-bonus",
        types: ["account_opened_v1"],
        retryDelayMs: 5,
        async handle(
          event: import("../../src/index.js").RecordedEvent,
          ctx: import("../../src/index.js").ProcessManagerContext,
        ) {
          const id = event.stream.slice("account-".length);
          await ctx.dispatch(account, id, { type: "deposit_v1", data: { amount: 100 } });
          handled.push(id);
          if (crashOnce) {
            crashOnce = false;
            throw new Error("crash after dispatch, before the checkpoint");
          }
        },
      };
      let pm = startProcessManager(store, options);
      await cqrs.dispatch(account, "x", { type: "open_account_v1", data: { owner: "x" } });
      await waitFor(async () => pm.position >= 2 && (await store.readCheckpoint("pm:welcome-bonus")) !== null);
      await pm.caughtUp();
      assert.deepEqual(handled, ["x", "x"]); // delivered twice ...
      assert.equal((await cqrs.load(account, "x")).state.balance, 100); // ... but deposited once
      const [opened, bonus] = await store.readStream("account-x");
      assert.equal(bonus.metadata.causationId, opened.id);
      await pm.stop();
      await store.close();
      // Restart: only new events are handled.
      store = place.open("pm");
      cqrs = createCqrs(store);
      await cqrs.dispatch(account, "y", { type: "open_account_v1", data: { owner: "y" } });
      pm = startProcessManager(store, options);
      await waitFor(async () => (await cqrs.load(account, "y")).state.balance === 100);
      await pm.caughtUp();
      assert.deepEqual(handled, ["x", "x", "y"]);
      assert.equal((await cqrs.load(account, "x")).state.balance, 100);
      await pm.stop();
      await store.close();
    });
  });
}
