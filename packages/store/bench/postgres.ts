// PostgreSQL backend bench: 100-event batch appends through the store vs raw node-postgres inserts of the same rows
// (same table shape and indexes, one INSERT statement = one transaction per batch, fsync on), measured in the same run against the same
// server, interleaved, median of rounds. Starts its own PostgreSQL 15 (like the tests). Last line `BENCH_JSON {...}`.
// Run: npm run bench -w packages/store   (build first: npx tsc -b packages/store)
import { randomUUID } from "node:crypto";
import pg from "pg";
import { openEventStore } from "../src/index.js";
import { startPostgres } from "../src/testing/postgres.js";
import { median, timedAsync as timed } from "./timing.js";

const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 1500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const BATCH = 100;

const payload = () => ({ plugin: "bench", n: Math.random(), tags: ["a", "b"], note: "x".repeat(80) });

const server = await startPostgres();
try {
  const store = openEventStore({ url: server.url, storeId: "bench" });
  await store.ready();
  let streamNo = 0;
  const storeBatch = async () => {
    await store.append(
      `b-${streamNo++ % 50}`,
      Array.from({ length: BATCH }, () => ({ type: "bench_event_v1", data: payload() })),
    );
  };
  const storeSingle = async () => {
    await store.append(`s-${streamNo++ % 50}`, [{ type: "bench_event_v1", data: payload() }]);
  };

  // The baseline, as a careful user would write it: the same rows into a table of the same shape and indexes, one
  // multi-row INSERT per batch as a named (prepared once) statement, which is its own transaction (no BEGIN/COMMIT
  // round trips); positions and revisions from in-memory counters (no locking, no revision check, no notify).
  const raw = new pg.Client({ connectionString: server.url });
  await raw.connect();
  await raw.query(`CREATE TABLE raw_events (store_id text NOT NULL, position bigint NOT NULL, id text NOT NULL,
    stream text NOT NULL, revision bigint NOT NULL, type text NOT NULL, data json NOT NULL, metadata json NOT NULL,
    created_at timestamptz NOT NULL, PRIMARY KEY (store_id, position), UNIQUE (store_id, id),
    UNIQUE (store_id, stream, revision))`);
  let rawPos = 0;
  const rawRev = new Map<string, number>();
  let rawStreamNo = 0;
  const rawInsert = async (n: number, prefix: string) => {
    const stream = `${prefix}-${rawStreamNo++ % 50}`;
    const rev = rawRev.get(stream) ?? -1;
    rawRev.set(stream, rev + n);
    const head = rawPos;
    rawPos += n;
    await raw.query({
      name: "raw_insert",
      text: `INSERT INTO raw_events(store_id, position, id, stream, revision, type, data, metadata, created_at)
       SELECT 'bench', $1::bigint + u.o, u.id, $2, $3::bigint + u.o, 'bench_event_v1', u.data::json, '{}', now()
       FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(id, data, o)`,
      values: [
        head,
        stream,
        rev,
        Array.from({ length: n }, () => randomUUID()),
        Array.from({ length: n }, () => JSON.stringify(payload())),
      ],
    });
  };

  const r = {
    storeBatch: [] as number[],
    rawBatch: [] as number[],
    storeSingle: [] as number[],
    rawSingle: [] as number[],
  };
  for (let i = 0; i < ROUNDS; i++) {
    r.storeBatch.push(await timed(storeBatch, BATCH));
    r.rawBatch.push(await timed(() => rawInsert(BATCH, "b"), BATCH));
    r.storeSingle.push(await timed(storeSingle, 1));
    r.rawSingle.push(await timed(() => rawInsert(1, "s"), 1));
  }
  await raw.end();
  await store.close();

  const m = {
    storeBatch: median(r.storeBatch),
    rawBatch: median(r.rawBatch),
    storeSingle: median(r.storeSingle),
    rawSingle: median(r.rawSingle),
  };
  const ratioBatch = m.storeBatch / m.rawBatch;
  const ratioSingle = m.storeSingle / m.rawSingle;
  const f = (n: number) => n.toFixed(0).padStart(9);
  console.log(`event store bench, PostgreSQL backend (fsync on, ${ROUNDS} rounds x ${ROUND_MS} ms, median)`);
  console.log(
    `  100-event batches events/s store ${f(m.storeBatch)}   raw pg ${f(m.rawBatch)}   ratio ${ratioBatch.toFixed(3)} (goal >= 0.5)`,
  );
  console.log(
    `  single-event appends/s     store ${f(m.storeSingle)}   raw pg ${f(m.rawSingle)}   ratio ${ratioSingle.toFixed(3)}`,
  );
  console.log(
    `BENCH_JSON ${JSON.stringify({
      bench: "store-postgres",
      batchEventsPerSec: Math.round(m.storeBatch),
      rawPgBatchEventsPerSec: Math.round(m.rawBatch),
      ratioBatch: Number(ratioBatch.toFixed(3)),
      ratioBatchGoal: 0.5,
      singleAppendsPerSec: Math.round(m.storeSingle),
      rawPgSingleInsertsPerSec: Math.round(m.rawSingle),
      ratioSingle: Number(ratioSingle.toFixed(3)),
    })}`,
  );
} finally {
  await server.stop();
}
