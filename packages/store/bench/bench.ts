// Event store bench: this store vs raw better-sqlite3 inserts of equivalent rows (same schema, same pragmas), measured
// in the same run, interleaved, median of rounds. Prints a human summary and a final `BENCH_JSON {...}` line.
// Run: npm run bench -w packages/store   (build first: npx tsc -b packages/store)
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createCqrs, openEventStore } from "../src/index.js";
import { account } from "../test/fixtures/account.js";
import { median, timedAsync } from "./timing.js";

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const durability = (process.env.BENCH_DURABILITY ?? "FULL") as "FULL" | "NORMAL";
const dir = mkdtempSync(join(tmpdir(), "hecate-store-bench-"));

const payload = () => ({ plugin: "bench", n: Math.random(), tags: ["a", "b"], note: "x".repeat(80) });

/** Runs `step` (which handles `unit` events) repeatedly for ROUND_MS; returns events per second. */
function timed(step: () => void, unit: number): number {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ROUND_MS) * 1_000_000n;
  let n = 0;
  let now = start;
  while (now < deadline) {
    step();
    n += unit;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

// ---- the store ----
const store = openEventStore({ directory: dir, storeId: "bench-store", durability });
let streamNo = 0;
const storeSingle = async () => {
  await store.append(`s-${streamNo++ % 50}`, [{ type: "bench_event_v1", data: payload() }]);
};
const storeBatch = async () => {
  await store.append(
    `b-${streamNo++ % 50}`,
    Array.from({ length: 100 }, () => ({ type: "bench_event_v1", data: payload() })),
  );
};

// ---- the baseline: raw better-sqlite3, same table and indexes, same pragmas, positions/revisions from counters ----
const raw = new Database(join(dir, "raw.sqlite"));
raw.pragma("journal_mode = WAL");
raw.pragma(`synchronous = ${durability}`);
raw.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
  revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, created_at TEXT NOT NULL);
  CREATE UNIQUE INDEX events_stream_revision ON events(stream, revision);`);
const insert = raw.prepare("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
let rawPos = 0;
const rawRev = new Map<string, number>();
const rawRow = (stream: string) => {
  const rev = (rawRev.get(stream) ?? -1) + 1;
  rawRev.set(stream, rev);
  insert.run(
    ++rawPos,
    randomUUID(),
    stream,
    rev,
    "bench_event_v1",
    JSON.stringify(payload()),
    "{}",
    new Date().toISOString(),
  );
};
let rawStreamNo = 0;
const rawSingleTx = raw.transaction(() => rawRow(`s-${rawStreamNo++ % 50}`));
const rawBatchTx = raw.transaction(() => {
  const stream = `b-${rawStreamNo++ % 50}`;
  for (let i = 0; i < 100; i++) rawRow(stream);
});
const rawSingle = () => rawSingleTx.immediate();
const rawBatch = () => rawBatchTx.immediate();

const results = {
  storeSingle: [] as number[],
  rawSingle: [] as number[],
  storeBatch: [] as number[],
  rawBatch: [] as number[],
};
for (let r = 0; r < ROUNDS; r++) {
  results.storeSingle.push(await timedAsync(storeSingle, 1));
  results.rawSingle.push(timed(rawSingle, 1));
  results.storeBatch.push(await timedAsync(storeBatch, 100));
  results.rawBatch.push(timed(rawBatch, 100));
}

// ---- commands: load (snapshot + tail) + decide + append, over 200 aggregates ----
const cqrs = createCqrs(store);
const agg = { ...account, snapshotEvery: 20 };
for (let i = 0; i < 200; i++)
  await cqrs.dispatch(agg, `acc-${i}`, { type: "open_account_v1", data: { owner: `o${i}` } });
let cmdNo = 0;
const dispatchRates: number[] = [];
for (let r = 0; r < ROUNDS; r++) {
  dispatchRates.push(
    await timedAsync(async () => {
      await cqrs.dispatch(agg, `acc-${cmdNo++ % 200}`, { type: "deposit_v1", data: { amount: 1 } });
    }),
  );
}

// ---- catch-up subscription read speed ----
const head = await store.headPosition();
let delivered = 0;
const subStart = process.hrtime.bigint();
const sub = store.subscribe({
  handler: () => {
    delivered++;
  },
});
await sub.caughtUp(head);
const subSeconds = Number(process.hrtime.bigint() - subStart) / 1e9;
await sub.stop();

await store.close();
raw.close();
rmSync(dir, { recursive: true, force: true });

const m = {
  storeSingle: median(results.storeSingle),
  rawSingle: median(results.rawSingle),
  storeBatch: median(results.storeBatch),
  rawBatch: median(results.rawBatch),
  dispatch: median(dispatchRates),
};
const ratioSingle = m.storeSingle / m.rawSingle;
const ratioBatch = m.storeBatch / m.rawBatch;
const f = (n: number) => n.toFixed(0).padStart(9);
console.log(`event store bench (synchronous=${durability}, WAL, ${ROUNDS} rounds x ${ROUND_MS} ms, median)`);
console.log(
  `  single-event appends/s     store ${f(m.storeSingle)}   raw better-sqlite3 ${f(m.rawSingle)}   ratio ${ratioSingle.toFixed(3)}`,
);
console.log(
  `  100-event batches events/s store ${f(m.storeBatch)}   raw better-sqlite3 ${f(m.rawBatch)}   ratio ${ratioBatch.toFixed(3)} (goal >= 0.5)`,
);
console.log(`  commands dispatched/s      ${f(m.dispatch)}   (load snapshot+tail, decide, append; 200 aggregates)`);
console.log(`  subscription catch-up      ${f(delivered / subSeconds)} events/s (${delivered} events)`);
console.log(
  `BENCH_JSON ${JSON.stringify({
    bench: "store",
    durability,
    singleAppendsPerSec: Math.round(m.storeSingle),
    rawSingleInsertsPerSec: Math.round(m.rawSingle),
    ratioSingle: Number(ratioSingle.toFixed(3)),
    batchEventsPerSec: Math.round(m.storeBatch),
    rawBatchEventsPerSec: Math.round(m.rawBatch),
    ratioBatch: Number(ratioBatch.toFixed(3)),
    ratioBatchGoal: 0.5,
    commandsPerSec: Math.round(m.dispatch),
    subscriptionCatchUpEventsPerSec: Math.round(delivered / subSeconds),
  })}`,
);
