/**
 * The PostgreSQL backend: the whole conformance suite (the same tests as SQLite) against a real PostgreSQL 15 this
 * file starts, plus what only a server backend has: commit order vs positions under concurrent writers (the
 * sequence-gap problem), a server restart under live subscriptions, an unreachable server, and the upgrade of a
 * database an older schema version left.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import {
  type EventStore,
  openEventStore,
  StoreError,
  StoreUnavailableError,
  WrongExpectedRevision,
} from "../src/index.js";
import { SCHEMA_VERSION } from "../src/postgres/schema.js";
import { freePort, type PgServer, startPostgres } from "../src/testing/postgres.js";
import { postgresBackend } from "./backends.js";
import { cqrsConformance } from "./conformance/cqrs.js";
import { projectionVersionConformance } from "./conformance/projection-version.js";
import { storeConformance } from "./conformance/store.js";
import { V1_DDL, v1Append } from "./fixtures/pg-schema-v1.js";
import { fixture, sleep, waitFor } from "./helpers.js";

let server: PgServer | undefined;
const url = () => {
  if (!server) throw new Error("postgres not started");
  return server.url;
};
before(async () => {
  server = await startPostgres();
});
after(async () => {
  await server?.stop();
});

const backend = postgresBackend(url);
storeConformance(backend);
cqrsConformance(backend);
projectionVersionConformance(backend);

/**
 * Reads `$all` in a loop after the last position it saw, and records every time it observed a position that was not
 * exactly the next one (a later-committed lower position would then be skipped for good by a cursor-based reader).
 */
function liveReader(read: (after: number) => Promise<number[]>) {
  let last = 0;
  let stop = false;
  const skips: string[] = [];
  const done = (async () => {
    while (!stop) {
      const positions = await read(last);
      for (const p of positions) {
        if (p !== last + 1) skips.push(`saw ${p} right after ${last}`);
        last = Math.max(last, p);
      }
      if (positions.length === 0) await sleep(1);
    }
  })();
  return {
    skips,
    get last() {
      return last;
    },
    async finish(head: number) {
      await waitFor(() => last >= head, 15_000, `reader at ${head}`);
      stop = true;
      await done;
    },
  };
}

describe("postgres: global positions are never observed out of commit order", () => {
  test("control: a sequence-numbered table DOES show the gap problem to the same reader", async (t) => {
    // Proves the reader below can see the problem: with positions from a sequence, concurrent transactions
    // commit out of order and a reader that moves its cursor past a visible position skips the lower ones.
    const pool = new pg.Pool({ connectionString: url(), max: 12 });
    t.after(() => pool.end().catch(() => {}));
    await pool.query("CREATE TABLE naive_events (position bigserial PRIMARY KEY, writer int, n int)");
    const reader = liveReader(async (afterPos) =>
      (
        await pool.query<{ position: string }>(
          "SELECT position FROM naive_events WHERE position > $1 ORDER BY position LIMIT 500",
          [afterPos],
        )
      ).rows.map((r) => Number(r.position)),
    );
    const writers = Array.from({ length: 8 }, async (_, w) => {
      const c = await pool.connect();
      try {
        for (let n = 0; n < 40; n++) {
          await c.query("BEGIN");
          await c.query("INSERT INTO naive_events(writer, n) VALUES ($1, $2)", [w, n]);
          await c.query("SELECT pg_sleep(random() * 0.004)");
          await c.query("COMMIT");
        }
      } finally {
        c.release();
      }
    });
    await Promise.all(writers);
    await reader.finish(320);
    t.diagnostic(`naive sequence: ${reader.skips.length} out-of-order observations, e.g. ${reader.skips[0]}`);
    assert.ok(reader.skips.length > 0, "the control run never committed out of order: the reader proves nothing");
  });

  test("8 concurrent writers + a live reader and a live subscription: no position ever skipped", async (t) => {
    const writersStore = openEventStore({ url: url(), storeId: "ooo", poolSize: 16 });
    const readerStore = openEventStore({ url: url(), storeId: "ooo" });
    t.after(() => Promise.all([writersStore.close(), readerStore.close()]));
    await writersStore.ready();
    const reader = liveReader(async (afterPos) =>
      (await readerStore.readAll({ afterPosition: afterPos, limit: 500 })).map((e) => e.position),
    );
    const delivered: number[] = [];
    const sub = readerStore.subscribe({ name: "ooo-sub", handler: (e) => void delivered.push(e.position) });
    let appended = 0;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let n = 0; n < 40; n++) {
          const size = 1 + ((w + n) % 4);
          const events = Array.from({ length: size }, (_, k) => ({ type: "tick", data: { w, n, k } }));
          await writersStore.append(`w-${w}-${n % 3}`, events);
          appended += size;
        }
      }),
    );
    const ms = Date.now() - started;
    const head = await readerStore.headPosition();
    assert.equal(head, appended);
    await reader.finish(head);
    await sub.caughtUp(head);
    t.diagnostic(`${appended} events by 8 writers in ${ms} ms; reader skips: ${reader.skips.length}`);
    assert.deepEqual(reader.skips, []);
    assert.deepEqual(
      delivered,
      Array.from({ length: head }, (_, i) => i + 1),
    );
    const all = await readerStore.readAll();
    assert.deepEqual(
      all.map((e) => e.position),
      Array.from({ length: head }, (_, i) => i + 1),
    );
    await sub.stop();
    await Promise.all([writersStore.close(), readerStore.close()]);
  });
});

describe("postgres: several processes on one database (what cluster mode builds on)", () => {
  test("2 writer processes (own pools) + this one: gapless positions, a live subscription here sees all", async (t) => {
    const store = openEventStore({ url: url(), storeId: "procs" });
    t.after(() => store.close());
    await store.ready();
    const seen: { position: number; pid: number | null }[] = [];
    const sub = store.subscribe({
      handler: (e) => void seen.push({ position: e.position, pid: (e.data as { pid?: number }).pid ?? null }),
    });
    const children = [0, 1].map(() => {
      const c = spawn(process.execPath, [fixture("live-writer.js"), url(), "procs", "40"], { stdio: "pipe" });
      let stderr = "";
      c.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
      });
      return new Promise<{ code: number | null; stderr: string }>((resolve) =>
        c.on("exit", (code) => resolve({ code, stderr })),
      );
    });
    for (let i = 0; i < 40; i++) await store.append("local", [{ type: "here", data: { i } }]);
    for (const c of await Promise.all(children)) assert.equal(c.code, 0, c.stderr);
    await waitFor(() => seen.length === 120, 15_000, "120 events live");
    assert.deepEqual(
      seen.map((e) => e.position),
      Array.from({ length: 120 }, (_, i) => i + 1),
    );
    const pids = new Set(seen.map((e) => e.pid).filter((p) => p !== null));
    assert.equal(pids.size, 2, "events from both writer processes");
    await sub.stop();
  });
});

describe("postgres: faults", () => {
  test("pg_ctl restart -m fast under live subscriptions: nothing lost, nothing doubled", async (t) => {
    const writer = openEventStore({ url: url(), storeId: "restart" });
    const subscriber = openEventStore({ url: url(), storeId: "restart" });
    t.after(() => Promise.all([writer.close(), subscriber.close()]));
    await writer.ready();
    const named: number[] = [];
    const volatile: number[] = [];
    const subNamed = subscriber.subscribe({
      name: "restart-sub",
      retryDelayMs: 50,
      handler: (e) => void named.push(e.position),
    });
    const subVolatile = subscriber.subscribe({ retryDelayMs: 50, handler: (e) => void volatile.push(e.position) });
    const acked = new Set<string>();
    let unavailable = 0;
    let restarted = false;
    const total = 120;
    const writing = (async () => {
      for (let i = 0; i < total; i++) {
        const id = `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`;
        // Retried with the same id until acknowledged: a commit whose reply was lost is not written twice.
        for (;;) {
          try {
            await writer.append(`r-${i % 5}`, [{ id, type: "tick", data: { i } }]);
            acked.add(id);
            break;
          } catch (error) {
            assert.ok(error instanceof StoreUnavailableError, `unexpected ${String(error)}`);
            unavailable++;
            await sleep(50);
          }
        }
        await sleep(5);
      }
    })();
    await waitFor(() => acked.size >= 40, 15_000, "40 acked appends");
    const t0 = Date.now();
    await server!.restart();
    restarted = true;
    const restartMs = Date.now() - t0;
    await writing;
    const head = await writer.headPosition();
    await Promise.all([subNamed.caughtUp(head), subVolatile.caughtUp(head)]);
    // After the restart, live delivery still works (the LISTEN connection came back).
    const late = await writer.append("late", [{ type: "tick", data: { late: true } }]);
    await waitFor(
      () => named.at(-1) === late.position && volatile.at(-1) === late.position,
      10_000,
      "live after restart",
    );
    t.diagnostic(`restart took ${restartMs} ms; ${unavailable} appends saw StoreUnavailableError and were retried`);
    assert.ok(restarted);
    assert.equal(head, total);
    const expected = Array.from({ length: total + 1 }, (_, i) => i + 1);
    assert.deepEqual(named, expected);
    assert.deepEqual(volatile, expected);
    const all = await writer.readAll();
    assert.deepEqual(
      all.map((e) => e.position),
      expected,
    );
    assert.equal(new Set(all.map((e) => e.id)).size, all.length);
    for (const id of acked)
      assert.ok(
        all.some((e) => e.id === id),
        `acked ${id} missing`,
      );
    assert.equal(await subscriber.readCheckpoint("restart-sub"), late.position);
    await Promise.all([subNamed.stop(), subVolatile.stop()]);
    await Promise.all([writer.close(), subscriber.close()]);
  });

  test("an unreachable server gives StoreUnavailableError naming the server (no password)", async () => {
    const port = await freePort();
    const store: EventStore = openEventStore({
      url: `postgres://hecate:s3cret@127.0.0.1:${port}/postgres`,
      storeId: "nowhere",
      connectTimeoutMs: 2000,
    });
    for (const call of [() => store.ready(), () => store.append("s", [{ type: "x", data: {} }]), () => store.readAll()])
      await assert.rejects(
        call(),
        (e: unknown) =>
          e instanceof StoreUnavailableError &&
          e.code === "STORE_UNAVAILABLE" &&
          e.message.includes(`127.0.0.1:${port}`) &&
          !e.message.includes("s3cret"),
      );
    assert.equal(store.location.includes("s3cret"), false);
    await store.close();
    assert.throws(() => openEventStore({ url: "mysql://x", storeId: "x" }), /postgres:\/\//);
  });
});

describe("postgres: schema upgrade", () => {
  test("a database left by schema 1 is migrated on open; its events stay, an old writer and a new one share it", async (t) => {
    const admin = new pg.Client({ connectionString: url() });
    await admin.connect();
    t.after(() => admin.end().catch(() => {}));
    await admin.query("CREATE DATABASE hecate_v1");
    const v1Url = url().replace(/\/postgres$/, "/hecate_v1");
    const old = new pg.Pool({ connectionString: v1Url, max: 4 });
    t.after(() => old.end().catch(() => {}));
    await old.query(V1_DDL);
    await old.query("INSERT INTO hecate_stores(store_id) VALUES ('legacy')");
    const oldIds = ["11111111-0000-4000-8000-000000000001", "11111111-0000-4000-8000-000000000002"];
    const oldClient = await old.connect();
    await v1Append(oldClient, "legacy", "acc", [
      { id: oldIds[0], type: "opened", data: { n: 0 } },
      { id: oldIds[1], type: "deposited", data: { n: 1 } },
    ]);
    await v1Append(oldClient, "legacy", "other", [{ id: randomUUID(), type: "x", data: {} }]);
    oldClient.release();

    const store = openEventStore({ url: v1Url, storeId: "legacy" });
    t.after(() => store.close());
    await store.ready();
    const meta = await old.query("SELECT value FROM hecate_meta WHERE key = 'schema_version'");
    assert.equal(meta.rows[0].value, String(SCHEMA_VERSION));
    assert.deepEqual(
      (await store.readAll()).map((e) => [e.position, e.stream, e.revision, e.type]),
      [
        [1, "acc", 0, "opened"],
        [2, "acc", 1, "deposited"],
        [3, "other", 0, "x"],
      ],
    );
    // The old batch replayed through the new code: the original result; a stale expected revision: typed error.
    const replay = await store.append("acc", [
      { id: oldIds[0], type: "opened", data: { n: 0 } },
      { id: oldIds[1], type: "deposited", data: { n: 1 } },
    ]);
    assert.deepEqual([replay.duplicate, replay.position, replay.revision], [true, 2, 1]);
    await assert.rejects(
      store.append("acc", [{ type: "y", data: {} }], { expectedRevision: 0 }),
      (e: unknown) => e instanceof WrongExpectedRevision && e.actual === 1,
    );
    assert.equal((await store.append("acc", [{ type: "y", data: {} }], { expectedRevision: 1 })).position, 4);

    // A node still on schema 1 (mid rolling upgrade) appends next to this one: one counter, gapless positions.
    await Promise.all([
      ...Array.from({ length: 3 }, async (_, w) => {
        const c = await old.connect();
        try {
          for (let n = 0; n < 15; n++)
            await v1Append(c, "legacy", `old-${w}`, [{ id: randomUUID(), type: "old", data: { w, n } }], n - 1);
        } finally {
          c.release();
        }
      }),
      ...Array.from({ length: 3 }, async (_, w) => {
        for (let n = 0; n < 15; n++)
          await store.append(
            `new-${w}`,
            [
              { type: "new", data: { w, n } },
              { type: "new", data: { w, n } },
            ],
            {
              expectedRevision: 2 * n - 1,
            },
          );
      }),
    ]);
    const all = await store.readAll();
    assert.deepEqual(
      all.map((e) => e.position),
      Array.from({ length: 4 + 45 + 90 }, (_, i) => i + 1),
    );
    assert.equal(await store.headPosition(), 139);
    await store.close();

    // A database from a newer version is refused, not written to.
    await old.query("UPDATE hecate_meta SET value = $1 WHERE key = 'schema_version'", [String(SCHEMA_VERSION + 1)]);
    const newer = openEventStore({ url: v1Url, storeId: "legacy" });
    t.after(() => newer.close());
    await assert.rejects(newer.ready(), (e: unknown) => e instanceof StoreError && e.code === "STORE_SCHEMA_TOO_NEW");
  });
});
