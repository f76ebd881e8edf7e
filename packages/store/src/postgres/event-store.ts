/**
 * The PostgreSQL backend (node-postgres): a store is the rows with its `store_id` in the shared tables (schema.ts,
 * where the position scheme is explained). Live subscriptions are woken by LISTEN/NOTIFY (connection.ts) and catch
 * up by reading after their position, so a lost notification or a reconnect loses nothing.
 */
import type pg from "pg";
import { type AllQuery, BaseEventStore } from "../core/base-store.js";
import type { SubscriptionRead } from "../core/subscription.js";
import {
  checkExpected,
  duplicateResult,
  type PreparedEvent,
  recordedBatch,
  validateStoreId,
} from "../core/validate.js";
import {
  InvalidArgumentError,
  StoreBusyError,
  StoreDiskFullError,
  StoreError,
  StoreUnavailableError,
} from "../errors.js";
import type { AppendResult, EventStoreOptions, ExpectedRevision, RecordedEvent, Snapshot } from "../types.js";
import { acquireConnection, type PgConnection } from "./connection.js";

interface EventRow {
  position: string;
  id: string;
  stream: string;
  revision: string;
  type: string;
  data: unknown;
  metadata: Record<string, unknown>;
  created_at: Date;
}

const COLUMNS = "position, id, stream, revision, type, data, metadata, created_at";

function toEvent(row: EventRow): RecordedEvent {
  return {
    id: row.id,
    stream: row.stream,
    revision: Number(row.revision),
    position: Number(row.position),
    type: row.type,
    data: row.data,
    metadata: row.metadata,
    createdAt: row.created_at.toISOString(),
  };
}

/** Node socket errors and SQLSTATEs that mean "the server is not there (now)". */
const UNAVAILABLE_NODE = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EHOSTUNREACH", "ETIMEDOUT", "EPIPE"]);
const UNAVAILABLE_SQLSTATE = new Set(["57P01", "57P02", "57P03", "53300", "3D000", "28P01", "28000"]);

export class PostgresEventStore extends BaseEventStore {
  readonly storeId: string;
  readonly location: string;
  private readonly conn: PgConnection;
  private stopListening: (() => void) | undefined;
  private opened: Promise<void> | undefined;

  constructor(options: EventStoreOptions & { url: string }) {
    super();
    validateStoreId(options.storeId);
    if (typeof options.url !== "string" || !/^postgres(ql)?:\/\//.test(options.url)) {
      throw new InvalidArgumentError("store url must start with postgres:// or postgresql://");
    }
    this.storeId = options.storeId;
    this.conn = acquireConnection(options.url, options);
    this.location = `${this.conn.location}#${this.storeId}`;
  }

  /** Schema in place and this store's counter row present; retried on the next call after a failure. */
  override async ready(): Promise<void> {
    await super.ready();
    this.opened ??= (async () => {
      await this.conn.ready();
      await this.conn.pool.query("INSERT INTO hecate_stores(store_id) VALUES ($1) ON CONFLICT (store_id) DO NOTHING", [
        this.storeId,
      ]);
    })().catch((error) => {
      this.opened = undefined;
      throw this.mapError(error);
    });
    return this.opened;
  }

  private async rows<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    return (await this.conn.pool.query<R>(sql, params)).rows;
  }

  protected mapError(error: unknown): unknown {
    if (error instanceof StoreError || !(error instanceof Error)) return error;
    const code = (error as { code?: string }).code;
    if (code === "53100") return new StoreDiskFullError(this.location, { cause: error });
    if (code === "55P03" || code === "40P01" || code === "40001")
      return new StoreBusyError(this.location, { cause: error });
    if (
      (code && (UNAVAILABLE_NODE.has(code) || UNAVAILABLE_SQLSTATE.has(code) || code.startsWith("08"))) ||
      /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/i.test(
        error.message,
      )
    ) {
      return new StoreUnavailableError(this.location, error.message || code || "connection failed", { cause: error });
    }
    return error;
  }

  // ---- primitives ----

  protected async appendBatch(stream: string, events: PreparedEvent[], expected: ExpectedRevision) {
    const client = await this.conn.pool.connect();
    let broken: Error | undefined;
    // A connection lost while checked out is also emitted as 'error' on the client (besides failing the query):
    // without a listener that would be an uncaught exception. The failed query reports it.
    const onLost = (error: Error) => {
      broken = error;
    };
    client.on("error", onLost);
    try {
      const result = await this.appendInTx(client, stream, events, expected);
      await client.query(result.duplicate || result.events.length === 0 ? "ROLLBACK" : "COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch((e: Error) => {
        broken = e;
      });
      throw error;
    } finally {
      // A connection that failed mid-transaction is destroyed, not given back to the pool.
      client.off("error", onLost);
      client.release(broken);
    }
  }

  /**
   * Three round trips: BEGIN + lock the counter row; one statement that checks (duplicate ids, expected revision) and,
   * only when both pass, inserts the batch and moves the counter; COMMIT (by the caller). The checks run in a statement
   * started after the lock was granted, so under READ COMMITTED they see every append committed before ours.
   */
  private async appendInTx(
    client: pg.PoolClient,
    stream: string,
    events: PreparedEvent[],
    expected: ExpectedRevision,
  ): Promise<AppendResult> {
    const id = this.storeId;
    // The store's counter row, locked until COMMIT: one appender per store at a time, positions in commit order (see
    // schema.ts). Sent as one simple query with BEGIN; the store id is safe to inline (validated: [A-Za-z0-9._-]).
    const [, locked] = (await client.query(
      `BEGIN; SELECT head FROM hecate_stores WHERE store_id = '${id}' FOR UPDATE`,
    )) as unknown as pg.QueryResult<{ head: string }>[];
    if (locked.rows.length === 0) throw new StoreError("STORE_MISSING", `event store ${this.location} was removed`);
    const head = Number(locked.rows[0].head);
    const createdAt = new Date().toISOString();
    const written = await client.query<{
      current: string;
      dups: string;
      inserted: string;
      last_position: string | null;
    }>(
      `WITH cur AS (SELECT coalesce(max(revision), -1) AS r FROM hecate_events WHERE store_id = $1 AND stream = $2),
       dup AS (SELECT count(*) AS n FROM hecate_events WHERE store_id = $1 AND id = ANY($5::text[])),
       go AS (SELECT cur.r FROM cur, dup WHERE dup.n = 0 AND ($9::text = 'any'
         OR ($9 = 'no_stream' AND cur.r = -1) OR ($9 = 'stream_exists' AND cur.r <> -1)
         OR ($9 = 'exact' AND cur.r = $10::bigint))),
       ins AS (
         INSERT INTO hecate_events(store_id, position, id, stream, revision, type, data, metadata, created_at)
         SELECT $1, $3::bigint + u.o, u.id, $2, go.r + u.o, u.type, u.data::json, u.metadata::json, $4
         FROM go, unnest($5::text[], $6::text[], $7::text[], $8::text[]) WITH ORDINALITY AS u(id, type, data, metadata, o)
         RETURNING 1),
       moved AS (UPDATE hecate_stores SET head = $3::bigint + (SELECT count(*) FROM ins)
         WHERE store_id = $1 AND EXISTS (SELECT 1 FROM ins))
       SELECT cur.r AS current, dup.n AS dups, (SELECT count(*) FROM ins) AS inserted,
         (SELECT position FROM hecate_events WHERE store_id = $1 AND stream = $2 ORDER BY revision DESC LIMIT 1)
           AS last_position
       FROM cur, dup`,
      [
        id,
        stream,
        head,
        createdAt,
        events.map((e) => e.id),
        events.map((e) => e.type),
        events.map((e) => e.data),
        events.map((e) => e.metadata),
        typeof expected === "number" ? "exact" : expected,
        typeof expected === "number" ? expected : null,
      ],
    );
    const row = written.rows[0];
    const current = Number(row.current);
    if (Number(row.dups) > 0) {
      const existing = await client.query<EventRow>(
        `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND id = ANY($2::text[]) ORDER BY position`,
        [id, events.map((e) => e.id)],
      );
      const duplicate = duplicateResult(stream, events.length, existing.rows.map(toEvent));
      if (duplicate) return duplicate;
    }
    checkExpected(stream, expected, current);
    if (events.length === 0) {
      return { stream, revision: current, position: Number(row.last_position ?? 0), events: [], duplicate: false };
    }
    if (Number(row.inserted) !== events.length)
      throw new StoreError("STORE_INTERNAL", `append to ${stream}: ${row.inserted} of ${events.length} rows written`);
    return recordedBatch(stream, events, head, current, createdAt);
  }

  protected async upsertSnapshot(stream: string, revision: number, json: string, version: number): Promise<void> {
    await this.conn.pool.query(
      `INSERT INTO hecate_snapshots(store_id, stream, revision, state, version, created_at)
       VALUES ($1, $2, $3, $4::json, $5, now())
       ON CONFLICT (store_id, stream) DO UPDATE SET revision = excluded.revision, state = excluded.state,
         version = excluded.version, created_at = excluded.created_at
       WHERE excluded.revision >= hecate_snapshots.revision OR excluded.version <> hecate_snapshots.version`,
      [this.storeId, stream, revision, json, version],
    );
  }

  protected async selectSnapshot(stream: string): Promise<Snapshot<unknown> | null> {
    const [row] = await this.rows<{ stream: string; revision: string; state: unknown; version: number }>(
      "SELECT stream, revision, state, version FROM hecate_snapshots WHERE store_id = $1 AND stream = $2",
      [this.storeId, stream],
    );
    return row ? { stream: row.stream, revision: Number(row.revision), state: row.state, version: row.version } : null;
  }

  protected async selectStream(stream: string, backward: boolean, fromRevision: number, limit: number | null) {
    const rows = await this.rows<EventRow>(
      backward
        ? `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND stream = $2 AND revision <= $3
           ORDER BY revision DESC LIMIT $4`
        : `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND stream = $2 AND revision >= $3
           ORDER BY revision ASC LIMIT $4`,
      [this.storeId, stream, fromRevision, limit],
    );
    return rows.map(toEvent);
  }

  protected async selectAll(q: AllQuery): Promise<RecordedEvent[]> {
    const filter = "AND ($3::text[] IS NULL OR type = ANY($3)) AND ($4::text IS NULL OR starts_with(stream, $4))";
    const rows = await this.rows<EventRow>(
      q.backward
        ? `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND position < $2 ${filter}
           ORDER BY position DESC LIMIT $5`
        : `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND position > $2 AND position <= $6 ${filter}
           ORDER BY position ASC LIMIT $5`,
      q.backward
        ? [this.storeId, q.before, q.types, q.prefix, q.limit]
        : [this.storeId, q.after, q.types, q.prefix, q.limit, q.upto],
    );
    return rows.map(toEvent);
  }

  protected async selectStreamAfter(q: SubscriptionRead): Promise<RecordedEvent[]> {
    const rows = await this.rows<EventRow>(
      `SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND stream = $2 AND revision > $3 AND position <= $4
         AND ($5::text[] IS NULL OR type = ANY($5)) ORDER BY revision ASC LIMIT $6`,
      [this.storeId, q.stream, q.revision ?? -1, q.upto, q.types, q.limit],
    );
    return rows.map(toEvent);
  }

  protected async selectRevision(stream: string, upto?: number): Promise<number> {
    const [row] = await this.rows<{ r: string }>(
      `SELECT coalesce(max(revision), -1) AS r FROM hecate_events WHERE store_id = $1 AND stream = $2
         AND ($3::bigint IS NULL OR position <= $3)`,
      [this.storeId, stream, upto ?? null],
    );
    return Number(row.r);
  }

  protected async selectHead(): Promise<number> {
    const [row] = await this.rows<{ head: string }>("SELECT head FROM hecate_stores WHERE store_id = $1", [
      this.storeId,
    ]);
    return Number(row?.head ?? 0);
  }

  protected async selectEvent(id: string): Promise<RecordedEvent | null> {
    const [row] = await this.rows<EventRow>(`SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND id = $2`, [
      this.storeId,
      id,
    ]);
    return row ? toEvent(row) : null;
  }

  protected async selectCheckpoint(name: string): Promise<number | null> {
    const [row] = await this.rows<{ position: string }>(
      "SELECT position FROM hecate_checkpoints WHERE store_id = $1 AND name = $2",
      [this.storeId, name],
    );
    return row ? Number(row.position) : null;
  }

  protected async upsertCheckpoint(name: string, position: number): Promise<void> {
    await this.conn.pool.query(
      `INSERT INTO hecate_checkpoints(store_id, name, position, updated_at) VALUES ($1, $2, $3, now())
       ON CONFLICT (store_id, name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`,
      [this.storeId, name, position],
    );
  }

  /** LISTEN while subscriptions run: a NOTIFY for this store (or a reconnect of the listener) wakes them. */
  protected watch(on: boolean): void {
    if (on && !this.stopListening && !this.closed)
      this.stopListening = this.conn.listen(this.storeId, () => this.notify());
    if (!on && this.stopListening) {
      this.stopListening();
      this.stopListening = undefined;
    }
  }

  protected async closeBackend(): Promise<void> {
    await this.conn.release();
  }
}
