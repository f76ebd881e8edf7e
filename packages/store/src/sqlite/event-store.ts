/**
 * The SQLite backend (better-sqlite3, WAL): one file `{directory}/{storeId}.sqlite` per store. The default backend;
 * several processes or worker threads may share one file. Calls are synchronous underneath (wrapped in the async
 * interface by BaseEventStore).
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { type AllQuery, BaseEventStore } from "../core/base-store.js";
import type { SubscriptionRead } from "../core/subscription.js";
import {
  checkExpected,
  duplicateResult,
  type PreparedEvent,
  recordedBatch,
  validateStoreId,
} from "../core/validate.js";
import { InvalidArgumentError, StoreBusyError, StoreCorruptError, StoreDiskFullError, StoreError } from "../errors.js";
import type { AppendResult, EventStoreOptions, ExpectedRevision, RecordedEvent, Snapshot } from "../types.js";

const SCHEMA_VERSION = 1;
const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");
/** How often live subscriptions look for commits made by other connections (processes or threads). */
const POLL_MS = 25;

interface EventRow {
  position: number;
  id: string;
  stream: string;
  revision: number;
  type: string;
  data: string;
  metadata: string;
  created_at: string;
}

interface PendingAppend {
  stream: string;
  events: PreparedEvent[];
  expected: ExpectedRevision;
  resolve: (result: AppendResult) => void;
  reject: (error: unknown) => void;
}

type GroupOutcome = { ok: true; result: AppendResult } | { ok: false; error: unknown };

function toEvent(row: EventRow): RecordedEvent {
  return {
    id: row.id,
    stream: row.stream,
    revision: row.revision,
    position: row.position,
    type: row.type,
    data: JSON.parse(row.data),
    metadata: JSON.parse(row.metadata),
    createdAt: row.created_at,
  };
}

function sqliteCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}

/** Checks the 16-byte header so a foreign file is refused before SQLite touches it. */
function checkHeader(file: string): void {
  if (!existsSync(file)) return;
  const size = statSync(file).size;
  if (size === 0) return;
  const fd = openSync(file, "r");
  try {
    const buf = Buffer.alloc(16);
    const n = readSync(fd, buf, 0, 16, 0);
    if (n < 16 || !buf.equals(SQLITE_HEADER)) throw new StoreCorruptError(file, "missing SQLite header");
  } finally {
    closeSync(fd);
  }
}

/** Opens (creating if needed) the event store `{directory}/{storeId}.sqlite`. */
/** Open stores of this thread, by file: removal of an open store is refused. */
const openFiles = new Map<string, number>();

/**
 * Deletes a store's files (`{storeId}.sqlite` and its `-wal`/`-shm`), e.g. for remove_plugin with purge. The store
 * must be closed (checked for stores opened by this thread; other processes must be stopped by the caller).
 */
export function removeSqliteStore(directory: string, storeId: string): void {
  validateStoreId(storeId);
  const file = join(directory, `${storeId}.sqlite`);
  if (openFiles.has(file)) throw new InvalidArgumentError(`event store ${file} is open: close it before removing it`);
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(file + suffix, { force: true });
}

export class SqliteEventStore extends BaseEventStore {
  readonly storeId: string;
  readonly file: string;
  private readonly db: Database.Database;
  private pollTimer: NodeJS.Timeout | undefined;
  private lastDataVersion = 0;
  private readonly stmts: ReturnType<SqliteEventStore["prepare"]>;
  private readonly appendTx: (stream: string, events: PreparedEvent[], expected: ExpectedRevision) => AppendResult;
  /** Commits a group of appends in one write transaction, each in a savepoint of its own (see appendBatch). */
  private readonly groupTx: (group: PendingAppend[], outcomes: GroupOutcome[]) => void;
  /** The appends of the current event-loop turn, committed together by commitGroup(). */
  private group: PendingAppend[] = [];

  constructor(options: EventStoreOptions) {
    super();
    const { directory, storeId } = options;
    validateStoreId(storeId);
    if (typeof directory !== "string" || directory === "") throw new InvalidArgumentError("directory is required");
    const durability = options.durability ?? "FULL";
    if (durability !== "FULL" && durability !== "NORMAL") {
      throw new InvalidArgumentError(`durability must be FULL or NORMAL, got ${String(durability)}`);
    }
    const { maxSizeBytes } = options;
    if (maxSizeBytes !== undefined && (!Number.isSafeInteger(maxSizeBytes) || maxSizeBytes <= 0)) {
      throw new InvalidArgumentError(`maxSizeBytes must be a positive integer, got ${String(maxSizeBytes)}`);
    }
    mkdirSync(directory, { recursive: true });
    this.storeId = storeId;
    this.file = join(directory, `${storeId}.sqlite`);
    checkHeader(this.file);
    let db: Database.Database | undefined;
    try {
      db = new Database(this.file, { timeout: options.busyTimeoutMs ?? 10_000 });
      db.pragma("journal_mode = WAL");
      db.pragma(`synchronous = ${durability}`);
      if (options.verifyOnOpen !== false) {
        const result = db.pragma("quick_check", { simple: true });
        if (result !== "ok") throw new StoreCorruptError(this.file, `quick_check: ${String(result)}`);
      }
      this.migrate(db);
      if (options.maxSizeBytes !== undefined) {
        const pageSize = db.pragma("page_size", { simple: true }) as number;
        const pages = Math.max(1, Math.floor(options.maxSizeBytes / pageSize));
        // max_page_count never shrinks below the current size; SQLite then returns SQLITE_FULL on growth.
        db.pragma(`max_page_count = ${pages}`);
      }
    } catch (error) {
      db?.close();
      if (error instanceof StoreError) throw error;
      const code = sqliteCode(error);
      if (code === "SQLITE_NOTADB" || code?.startsWith("SQLITE_CORRUPT")) {
        throw new StoreCorruptError(this.file, (error as Error).message, { cause: error });
      }
      throw this.mapError(error);
    }
    this.db = db;
    openFiles.set(this.file, (openFiles.get(this.file) ?? 0) + 1);
    this.stmts = this.prepare();
    this.lastDataVersion = this.stmts.dataVersion.get() as number;
    const tx = db.transaction((stream: string, events: PreparedEvent[], expected: ExpectedRevision) =>
      this.appendInTx(stream, events, expected),
    );
    // BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout instead of
    // failing with SQLITE_BUSY on lock upgrade; exactly one of them wins each revision.
    this.appendTx = tx.immediate;
    this.groupTx = db.transaction((group: PendingAppend[], outcomes: GroupOutcome[]) => {
      for (const a of group) {
        try {
          // nested in the group's transaction: a SAVEPOINT, rolled back alone on a throw
          outcomes.push({ ok: true, result: tx(a.stream, a.events, a.expected) });
        } catch (error) {
          // SQLite rolled the whole transaction back itself (e.g. disk full): the group fails as one, nothing of
          // it is committed.
          if (!db.inTransaction) throw error;
          outcomes.push({ ok: false, error });
        }
      }
    }).immediate;
  }

  get location(): string {
    return this.file;
  }

  private migrate(db: Database.Database): void {
    db.exec(`
      CREATE TABLE IF NOT EXISTS events (
        position   INTEGER PRIMARY KEY,
        id         TEXT NOT NULL UNIQUE,
        stream     TEXT NOT NULL,
        revision   INTEGER NOT NULL,
        type       TEXT NOT NULL,
        data       TEXT NOT NULL,
        metadata   TEXT NOT NULL,
        created_at TEXT NOT NULL
      );
      CREATE UNIQUE INDEX IF NOT EXISTS events_stream_revision ON events(stream, revision);
      CREATE TABLE IF NOT EXISTS checkpoints (
        name       TEXT PRIMARY KEY,
        position   INTEGER NOT NULL,
        updated_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS snapshots (
        stream     TEXT PRIMARY KEY,
        revision   INTEGER NOT NULL,
        state      TEXT NOT NULL,
        version    INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '${SCHEMA_VERSION}');
    `);
    const version = Number(
      (db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").pluck().get() as string) ?? 0,
    );
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        "STORE_SCHEMA_TOO_NEW",
        `event store ${this.file} has schema ${version}, this version understands ${SCHEMA_VERSION}`,
      );
    }
  }

  private prepare() {
    const db = this.db;
    return {
      dataVersion: db.prepare("PRAGMA data_version").pluck(),
      head: db.prepare("SELECT coalesce(max(position), 0) FROM events").pluck(),
      streamRevision: db.prepare("SELECT coalesce(max(revision), -1) FROM events WHERE stream = ?").pluck(),
      streamLast: db.prepare("SELECT * FROM events WHERE stream = ? ORDER BY revision DESC LIMIT 1"),
      byIds: db.prepare("SELECT * FROM events WHERE id IN (SELECT value FROM json_each(?)) ORDER BY position"),
      byId: db.prepare("SELECT * FROM events WHERE id = ?"),
      insert: db.prepare(
        "INSERT INTO events(position, id, stream, revision, type, data, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      streamForward: db.prepare(
        "SELECT * FROM events WHERE stream = ? AND revision >= ? ORDER BY revision ASC LIMIT ?",
      ),
      streamBackward: db.prepare(
        "SELECT * FROM events WHERE stream = ? AND revision <= ? ORDER BY revision DESC LIMIT ?",
      ),
      allForward: db.prepare(`SELECT * FROM events WHERE position > @after AND position <= @upto
        AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
        AND (@prefix IS NULL OR substr(stream, 1, length(@prefix)) = @prefix)
        ORDER BY position ASC LIMIT @limit`),
      allBackward: db.prepare(`SELECT * FROM events WHERE position < @before
        AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
        AND (@prefix IS NULL OR substr(stream, 1, length(@prefix)) = @prefix)
        ORDER BY position DESC LIMIT @limit`),
      streamAfter: db.prepare(`SELECT * FROM events WHERE stream = @stream AND revision > @revision
        AND position <= @upto AND (@types IS NULL OR type IN (SELECT value FROM json_each(@types)))
        ORDER BY revision ASC LIMIT @limit`),
      streamRevisionAt: db
        .prepare("SELECT coalesce(max(revision), -1) FROM events WHERE stream = ? AND position <= ?")
        .pluck(),
      readCheckpoint: db.prepare("SELECT position FROM checkpoints WHERE name = ?").pluck(),
      saveCheckpoint: db.prepare(
        `INSERT INTO checkpoints(name, position, updated_at) VALUES (?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`,
      ),
      saveSnapshot: db.prepare(
        `INSERT INTO snapshots(stream, revision, state, version, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(stream) DO UPDATE SET revision = excluded.revision, state = excluded.state,
           version = excluded.version, created_at = excluded.created_at
         WHERE excluded.revision >= snapshots.revision OR excluded.version <> snapshots.version`,
      ),
      loadSnapshot: db.prepare("SELECT stream, revision, state, version FROM snapshots WHERE stream = ?"),
    };
  }

  /** Maps SQLite failures to typed errors; the transaction wrapper has already rolled back. */
  protected mapError(error: unknown): unknown {
    const code = sqliteCode(error);
    if (!code) return error;
    // SQLITE_FULL: the disk is full (ENOSPC) or max_page_count (the size quota) was reached.
    // (SQLite's unix VFS turns a write that fails with ENOSPC into SQLITE_FULL.)
    if (code === "SQLITE_FULL") return new StoreDiskFullError(this.file, { cause: error });
    if (code === "SQLITE_BUSY" || code.startsWith("SQLITE_BUSY"))
      return new StoreBusyError(this.file, { cause: error });
    if (code === "SQLITE_NOTADB" || code.startsWith("SQLITE_CORRUPT")) {
      return new StoreCorruptError(this.file, (error as Error).message, { cause: error });
    }
    return error;
  }

  // ---- primitives ----

  /**
   * Group commit: the appends made in one event-loop turn (e.g. the commands of the requests that the message
   * batches of one turn delivered to a plugin's worker) commit in ONE write transaction, from setImmediate, so one
   * fsync (durability FULL) covers them all instead of one each. A microtask checkpoint would be too narrow: each
   * message event of a MessagePort ends in a checkpoint of its own, and a turn often brings several. Each append
   * keeps its own outcome: it runs in a savepoint of its own, so a conflict or a duplicate rolls back only that
   * append, and none resolves before the transaction has committed. A lone append commits as before.
   */
  protected appendBatch(stream: string, events: PreparedEvent[], expected: ExpectedRevision): Promise<AppendResult> {
    return new Promise((resolve, reject) => {
      if (this.group.push({ stream, events, expected, resolve, reject }) === 1) setImmediate(() => this.commitGroup());
    });
  }

  private commitGroup(): void {
    const group = this.group;
    if (group.length === 0) return;
    this.group = [];
    if (group.length === 1) {
      const a = group[0];
      try {
        a.resolve(this.appendTx(a.stream, a.events, a.expected));
      } catch (error) {
        a.reject(error);
      }
      return;
    }
    const outcomes: GroupOutcome[] = [];
    try {
      this.groupTx(group, outcomes);
    } catch (error) {
      for (const a of group) a.reject(error); // the transaction did not commit: none of the group is stored
      return;
    }
    for (let i = 0; i < group.length; i++) {
      const outcome = outcomes[i];
      if (outcome.ok) group[i].resolve(outcome.result);
      else group[i].reject(outcome.error);
    }
  }

  private appendInTx(stream: string, events: PreparedEvent[], expected: ExpectedRevision): AppendResult {
    const s = this.stmts;
    if (events.length > 0) {
      const existing = (s.byIds.all(JSON.stringify(events.map((e) => e.id))) as EventRow[]).map(toEvent);
      const duplicate = duplicateResult(stream, events.length, existing);
      if (duplicate) return duplicate;
    }
    const current = s.streamRevision.get(stream) as number;
    checkExpected(stream, expected, current);
    if (events.length === 0) {
      const last = s.streamLast.get(stream) as EventRow | undefined;
      return { stream, revision: current, position: last?.position ?? 0, events: [], duplicate: false };
    }
    // Position = max + 1 inside the write transaction (one writer at a time: BEGIN IMMEDIATE): a rolled-back append
    // leaves no gap (unlike AUTOINCREMENT), and positions commit in order.
    const head = s.head.get() as number;
    const result = recordedBatch(stream, events, head, current, new Date().toISOString());
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      s.insert.run(head + 1 + i, e.id, stream, current + 1 + i, e.type, e.data, e.metadata, result.events[i].createdAt);
    }
    return result;
  }

  protected upsertSnapshot(stream: string, revision: number, json: string, version: number): void {
    this.stmts.saveSnapshot.run(stream, revision, json, version, new Date().toISOString());
  }

  protected selectSnapshot(stream: string): Snapshot<unknown> | null {
    const row = this.stmts.loadSnapshot.get(stream) as
      | { stream: string; revision: number; state: string; version: number }
      | undefined;
    return row
      ? { stream: row.stream, revision: row.revision, state: JSON.parse(row.state), version: row.version }
      : null;
  }

  protected selectStream(stream: string, backward: boolean, fromRevision: number, limit: number | null) {
    const stmt = backward ? this.stmts.streamBackward : this.stmts.streamForward;
    return (stmt.all(stream, fromRevision, limit ?? -1) as EventRow[]).map(toEvent);
  }

  protected selectAll(q: AllQuery): RecordedEvent[] {
    const types = q.types ? JSON.stringify(q.types) : null;
    const limit = q.limit ?? -1; // SQLite: LIMIT -1 = no limit
    const rows = q.backward
      ? this.stmts.allBackward.all({ before: q.before, types, prefix: q.prefix, limit })
      : this.stmts.allForward.all({ after: q.after, upto: q.upto, types, prefix: q.prefix, limit });
    return (rows as EventRow[]).map(toEvent);
  }

  protected selectStreamAfter(q: SubscriptionRead): RecordedEvent[] {
    const rows = this.stmts.streamAfter.all({
      stream: q.stream,
      revision: q.revision ?? -1,
      upto: q.upto,
      types: q.types ? JSON.stringify(q.types) : null,
      limit: q.limit,
    });
    return (rows as EventRow[]).map(toEvent);
  }

  protected selectRevision(stream: string, upto?: number): number {
    return (
      upto === undefined ? this.stmts.streamRevision.get(stream) : this.stmts.streamRevisionAt.get(stream, upto)
    ) as number;
  }

  protected selectHead(): number {
    return this.stmts.head.get() as number;
  }

  protected selectEvent(id: string): RecordedEvent | null {
    const row = this.stmts.byId.get(id) as EventRow | undefined;
    return row ? toEvent(row) : null;
  }

  protected selectCheckpoint(name: string): number | null {
    return (this.stmts.readCheckpoint.get(name) as number | undefined) ?? null;
  }

  protected upsertCheckpoint(name: string, position: number): void {
    this.stmts.saveCheckpoint.run(name, position, new Date().toISOString());
  }

  /**
   * Other processes/threads commit through their own connections; `PRAGMA data_version` changes on this connection
   * when any other connection commits, which is a cheap check (no table read) for the poll.
   */
  protected watch(on: boolean): void {
    if (!on) {
      if (this.pollTimer) clearInterval(this.pollTimer);
      this.pollTimer = undefined;
      return;
    }
    if (this.pollTimer || this.closed) return;
    this.pollTimer = setInterval(() => {
      if (this.closed) return;
      try {
        const v = this.stmts.dataVersion.get() as number;
        if (v !== this.lastDataVersion) {
          this.lastDataVersion = v;
          this.notify();
        }
      } catch {
        // A transient error (e.g. busy) is retried on the next tick.
      }
    }, POLL_MS);
    this.pollTimer.unref();
  }

  protected async closeBackend(): Promise<void> {
    this.commitGroup(); // appends already accepted are committed before the connection goes
    try {
      // Fold the WAL back into the main file so the store is a single self-contained file at rest. TRUNCATE waits for
      // other connections' readers, so bound that wait: close must not hang on a busy sibling process.
      this.db.pragma("busy_timeout = 1000");
      this.db.pragma("wal_checkpoint(TRUNCATE)");
    } catch {
      // Another connection may hold a read lock; the WAL stays and is replayed on the next open. Nothing is lost.
    }
    this.db.close();
    const n = (openFiles.get(this.file) ?? 1) - 1;
    if (n > 0) openFiles.set(this.file, n);
    else openFiles.delete(this.file);
  }
}
