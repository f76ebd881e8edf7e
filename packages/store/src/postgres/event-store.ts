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
import { isPostgresUnreachable } from "./unreachable.js";

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
/** Named: parsed and planned once per pooled connection. */
const APPEND: pg.QueryConfig = {
  name: "hecate_append",
  text: "SELECT status, o_head, o_current FROM hecate_append($1, $2, $3, $4, $5, $6, $7, $8, $9)",
};
/** The UNIQUE (store_id, id) constraint (PostgreSQL's default name): an event id already stored in this store. */
const ID_KEY = "hecate_events_store_id_id_key";

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

  private async rows<R extends pg.QueryResultRow>(sql: string | pg.QueryConfig, params: unknown[]): Promise<R[]> {
    return (await this.conn.pool.query<R>(sql, params)).rows;
  }

  protected mapError(error: unknown): unknown {
    if (error instanceof StoreError || !(error instanceof Error)) return error;
    const code = (error as { code?: string }).code;
    if (code === "53100") return new StoreDiskFullError(this.location, { cause: error });
    if (code === "55P03" || code === "40P01" || code === "40001")
      return new StoreBusyError(this.location, { cause: error });
    if (isPostgresUnreachable(error)) {
      return new StoreUnavailableError(this.location, error.message || code || "connection failed", { cause: error });
    }
    return error;
  }

  // ---- primitives ----

  /**
   * One round trip: `hecate_append` (schema.ts) locks the counter, checks the expected revision and writes, all in the
   * implicit transaction of one statement. The rare outcomes take a second look: a wrong revision or an id already
   * stored (23505 on UNIQUE (store_id, id)) reads the stored events with the batch's ids, since an exact replay must
   * return the original result (even when the expected revision no longer holds) and a partial one must fail.
   */
  protected async appendBatch(stream: string, events: PreparedEvent[], expected: ExpectedRevision) {
    if (events.length === 0) return this.emptyAppend(stream, expected);
    const createdAt = new Date().toISOString();
    let outcome: { status: "ok" | "wrong_revision" | "missing"; o_head: string; o_current: string };
    try {
      [outcome] = await this.rows<typeof outcome>(APPEND, [
        this.storeId,
        stream,
        typeof expected === "number" ? "exact" : expected,
        typeof expected === "number" ? expected : null,
        events.map((e) => e.id),
        events.map((e) => e.type),
        events.map((e) => e.data),
        events.map((e) => e.metadata),
        createdAt,
      ]);
    } catch (error) {
      if ((error as { code?: string }).code !== "23505" || (error as { constraint?: string }).constraint !== ID_KEY)
        throw error;
      const duplicate = await this.storedDuplicate(stream, events);
      if (duplicate) return duplicate;
      // The conflicting row is gone (its store was removed): nothing of ours was written, say so.
      throw error;
    }
    if (outcome.status === "missing") throw new StoreError("STORE_MISSING", `event store ${this.location} was removed`);
    const current = Number(outcome.o_current);
    if (outcome.status === "wrong_revision") {
      const duplicate = await this.storedDuplicate(stream, events);
      if (duplicate) return duplicate;
      checkExpected(stream, expected, current);
      throw new StoreError("STORE_INTERNAL", `append to ${stream}: revision check disagrees (current ${current})`);
    }
    return recordedBatch(stream, events, Number(outcome.o_head), current, createdAt);
  }

  /** The original result when the batch's ids are stored (exact replay); throws for a partial one; null if none. */
  private async storedDuplicate(stream: string, events: PreparedEvent[]): Promise<AppendResult | null> {
    // One probe of UNIQUE (store_id, id) per id (LATERAL … LIMIT 1 keeps it a nested loop): `id = ANY(…)` may be
    // planned as a scan of the whole store while the table has no statistics yet.
    const existing = await this.rows<EventRow>(
      `SELECT e.* FROM unnest($2::text[]) AS u(id) CROSS JOIN LATERAL
         (SELECT ${COLUMNS} FROM hecate_events WHERE store_id = $1 AND id = u.id LIMIT 1) e ORDER BY e.position`,
      [this.storeId, events.map((e) => e.id)],
    );
    return duplicateResult(stream, events.length, existing.map(toEvent));
  }

  /** An empty batch writes nothing: it only checks the expected revision (one read, no lock). */
  private async emptyAppend(stream: string, expected: ExpectedRevision): Promise<AppendResult> {
    const [last] = await this.rows<{ revision: string; position: string }>(
      `SELECT revision, position FROM hecate_events WHERE store_id = $1 AND stream = $2 ORDER BY revision DESC LIMIT 1`,
      [this.storeId, stream],
    );
    const current = last ? Number(last.revision) : -1;
    checkExpected(stream, expected, current);
    return { stream, revision: current, position: last ? Number(last.position) : 0, events: [], duplicate: false };
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
