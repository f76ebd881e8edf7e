import { closeSync, existsSync, mkdirSync, openSync, readSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import {
  DuplicateEventIdError,
  InvalidArgumentError,
  StoreBusyError,
  StoreClosedError,
  StoreCorruptError,
  StoreDiskFullError,
  StoreError,
  SubscriptionStoppedError,
  WrongExpectedRevision,
} from "./errors.js";
import { newId } from "./ids.js";
import type {
  AppendResult,
  EventStore,
  EventStoreOptions,
  ExpectedRevision,
  NewEvent,
  ReadAllOptions,
  ReadStreamOptions,
  RecordedEvent,
  Snapshot,
  Subscription,
  SubscriptionOptions,
} from "./types.js";

const SCHEMA_VERSION = 1;
const SQLITE_HEADER = Buffer.from("SQLite format 3\0", "latin1");
/** How often live subscriptions look for commits made by other connections (processes or threads). */
const POLL_MS = 25;
const MAX_ID_LENGTH = 200;

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
export function openEventStore(options: EventStoreOptions): EventStore {
  return new SqliteEventStore(options);
}

/** Open stores of this thread, by file: removal of an open store is refused. */
const openFiles = new Map<string, number>();

const STORE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Deletes a store's files (`{storeId}.sqlite` and its `-wal`/`-shm`), e.g. for remove_plugin with purge. The store
 * must be closed (checked for stores opened by this thread; other processes must be stopped by the caller).
 */
export function removeEventStore(directory: string, storeId: string): void {
  if (typeof storeId !== "string" || !STORE_ID.test(storeId)) {
    throw new InvalidArgumentError(`invalid storeId ${JSON.stringify(storeId)}`);
  }
  const file = join(directory, `${storeId}.sqlite`);
  if (openFiles.has(file)) throw new InvalidArgumentError(`event store ${file} is open: close it before removing it`);
  for (const suffix of ["", "-wal", "-shm", "-journal"]) rmSync(file + suffix, { force: true });
}

type IdEvent = NewEvent & { id: string };

interface ReadAfterQuery {
  after: number;
  upto: number;
  limit: number;
  types: string | null;
  prefix: string | null;
}

export class SqliteEventStore implements EventStore {
  readonly storeId: string;
  readonly file: string;
  private readonly db: Database.Database;
  private closed = false;
  private readonly subscriptions = new Set<SubscriptionImpl>();
  private readonly activeNames = new Set<string>();
  private pollTimer: NodeJS.Timeout | undefined;
  private readonly closeHooks = new Set<() => Promise<void> | void>();
  private lastDataVersion = 0;
  private readonly stmts: ReturnType<SqliteEventStore["prepare"]>;
  private readonly appendTx: (stream: string, events: IdEvent[], expected: ExpectedRevision) => AppendResult;

  constructor(options: EventStoreOptions) {
    const { directory, storeId } = options;
    if (typeof storeId !== "string" || !STORE_ID.test(storeId)) {
      throw new InvalidArgumentError(`invalid storeId ${JSON.stringify(storeId)}: use [A-Za-z0-9._-], max 128 chars`);
    }
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
    const tx = db.transaction((stream: string, events: IdEvent[], expected: ExpectedRevision) =>
      this.appendInTx(stream, events, expected),
    );
    // BEGIN IMMEDIATE takes the write lock up front, so concurrent writers queue on busy_timeout instead of
    // failing with SQLITE_BUSY on lock upgrade; exactly one of them wins each revision.
    this.appendTx = tx.immediate;
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
  private mapError(error: unknown): unknown {
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

  private guard<T>(fn: () => T): T {
    if (this.closed) throw new StoreClosedError(this.storeId);
    try {
      return fn();
    } catch (error) {
      throw this.mapError(error);
    }
  }

  // ---- writes ----

  append(stream: string, events: NewEvent[], options?: { expectedRevision?: ExpectedRevision }): AppendResult {
    if (this.closed) throw new StoreClosedError(this.storeId);
    validateStream(stream);
    if (!Array.isArray(events)) throw new InvalidArgumentError("events must be an array");
    const expected = options?.expectedRevision ?? "any";
    validateExpected(expected);
    const seen = new Set<string>();
    const prepared = events.map((e, i) => {
      if (!e || typeof e !== "object") throw new InvalidArgumentError(`event #${i} must be an object`);
      if (typeof e.type !== "string" || e.type === "" || e.type.length > 200) {
        throw new InvalidArgumentError(`event #${i}: type must be a non-empty string (max 200 chars)`);
      }
      const id = e.id ?? newId();
      if (typeof id !== "string" || id === "" || id.length > MAX_ID_LENGTH) {
        throw new InvalidArgumentError(`event #${i}: id must be a non-empty string (max ${MAX_ID_LENGTH} chars)`);
      }
      if (seen.has(id)) throw new InvalidArgumentError(`event #${i}: id ${id} appears twice in the batch`);
      seen.add(id);
      if (e.metadata !== undefined && (typeof e.metadata !== "object" || e.metadata === null)) {
        throw new InvalidArgumentError(`event #${i}: metadata must be an object`);
      }
      return { ...e, id };
    });
    const result = this.guard(() => this.appendTx(stream, prepared, expected));
    if (!result.duplicate && result.events.length > 0) this.notify();
    return result;
  }

  private appendInTx(stream: string, events: IdEvent[], expected: ExpectedRevision): AppendResult {
    const s = this.stmts;
    if (events.length > 0) {
      const existing = (s.byIds.all(JSON.stringify(events.map((e) => e.id))) as EventRow[]).map(toEvent);
      if (existing.length > 0) {
        const ids = existing.map((e) => e.id);
        if (existing.some((e) => e.stream !== stream)) {
          throw new DuplicateEventIdError(stream, ids, "event id(s) already stored in another stream");
        }
        if (existing.length !== events.length) {
          throw new DuplicateEventIdError(
            stream,
            ids,
            `batch mixes ${existing.length} already-stored event id(s) with ${events.length - existing.length} new one(s); nothing was written — retry with exactly the original batch or only new ids`,
          );
        }
        const last = existing[existing.length - 1];
        return { stream, revision: last.revision, position: last.position, events: existing, duplicate: true };
      }
    }
    const current = s.streamRevision.get(stream) as number;
    if (
      (expected === "no_stream" && current !== -1) ||
      (expected === "stream_exists" && current === -1) ||
      (typeof expected === "number" && expected !== current)
    ) {
      throw new WrongExpectedRevision(stream, expected, current);
    }
    if (events.length === 0) {
      const last = s.streamLast.get(stream) as EventRow | undefined;
      return { stream, revision: current, position: last?.position ?? 0, events: [], duplicate: false };
    }
    // Position = max + 1 inside the write transaction: a rolled-back append leaves no gap (unlike AUTOINCREMENT).
    const head = s.head.get() as number;
    const createdAt = new Date().toISOString();
    const recorded: RecordedEvent[] = [];
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      let data: string;
      let metadata: string;
      try {
        data = JSON.stringify(e.data ?? null);
        metadata = JSON.stringify(e.metadata ?? {});
      } catch (error) {
        throw new InvalidArgumentError(`event #${i} (${e.type}) is not JSON-serialisable: ${(error as Error).message}`);
      }
      const position = head + 1 + i;
      const revision = current + 1 + i;
      s.insert.run(position, e.id, stream, revision, e.type, data, metadata, createdAt);
      recorded.push({
        id: e.id,
        stream,
        revision,
        position,
        type: e.type,
        data: JSON.parse(data),
        metadata: JSON.parse(metadata),
        createdAt,
      });
    }
    const last = recorded[recorded.length - 1];
    return { stream, revision: last.revision, position: last.position, events: recorded, duplicate: false };
  }

  saveSnapshot<S>(stream: string, revision: number, state: S, version = 0): void {
    validateStream(stream);
    if (!Number.isInteger(revision) || revision < 0) throw new InvalidArgumentError("snapshot revision must be >= 0");
    const json = JSON.stringify(state);
    if (json === undefined) throw new InvalidArgumentError("snapshot state must be JSON-serialisable");
    if (!Number.isInteger(version)) throw new InvalidArgumentError("snapshot version must be an integer");
    this.guard(() => this.stmts.saveSnapshot.run(stream, revision, json, version, new Date().toISOString()));
  }

  loadSnapshot<S>(stream: string): Snapshot<S> | null {
    const row = this.guard(() => this.stmts.loadSnapshot.get(stream)) as
      | { stream: string; revision: number; state: string; version: number }
      | undefined;
    return row
      ? { stream: row.stream, revision: row.revision, state: JSON.parse(row.state) as S, version: row.version }
      : null;
  }

  // ---- reads ----

  readStream(stream: string, options: ReadStreamOptions = {}): RecordedEvent[] {
    const limit = normLimit(options.limit);
    const rows = this.guard(() => {
      if (options.direction === "backward") {
        return this.stmts.streamBackward.all(stream, options.fromRevision ?? Number.MAX_SAFE_INTEGER, limit);
      }
      return this.stmts.streamForward.all(stream, options.fromRevision ?? 0, limit);
    }) as EventRow[];
    return rows.map(toEvent);
  }

  readAll(options: ReadAllOptions = {}): RecordedEvent[] {
    const limit = normLimit(options.limit);
    const types = options.types ? JSON.stringify(options.types) : null;
    const prefix = options.streamPrefix ?? null;
    const rows = this.guard(() => {
      if (options.direction === "backward") {
        return this.stmts.allBackward.all({
          before: options.beforePosition ?? Number.MAX_SAFE_INTEGER,
          types,
          prefix,
          limit,
        });
      }
      return this.stmts.allForward.all({
        after: options.afterPosition ?? 0,
        upto: Number.MAX_SAFE_INTEGER,
        types,
        prefix,
        limit,
      });
    }) as EventRow[];
    return rows.map(toEvent);
  }

  streamRevision(stream: string): number {
    return this.guard(() => this.stmts.streamRevision.get(stream)) as number;
  }

  headPosition(): number {
    return this.guard(() => this.stmts.head.get()) as number;
  }

  getEvent(id: string): RecordedEvent | null {
    const row = this.guard(() => this.stmts.byId.get(id)) as EventRow | undefined;
    return row ? toEvent(row) : null;
  }

  readCheckpoint(name: string): number | null {
    return (this.guard(() => this.stmts.readCheckpoint.get(name)) as number | undefined) ?? null;
  }

  /** @internal used by subscriptions. */
  saveCheckpoint(name: string, position: number): void {
    this.guard(() => this.stmts.saveCheckpoint.run(name, position, new Date().toISOString()));
  }

  /** @internal subscription read: events after `after` (global) up to `upto`. */
  readForSubscription(q: ReadAfterQuery & { stream?: string; revision?: number }): RecordedEvent[] {
    const rows = this.guard(() =>
      q.stream !== undefined
        ? this.stmts.streamAfter.all({
            stream: q.stream,
            revision: q.revision ?? -1,
            upto: q.upto,
            types: q.types,
            limit: q.limit,
          })
        : this.stmts.allForward.all({ after: q.after, upto: q.upto, types: q.types, prefix: q.prefix, limit: q.limit }),
    ) as EventRow[];
    return rows.map(toEvent);
  }

  /** @internal revision of `stream` at global position `position`. */
  streamRevisionAt(stream: string, position: number): number {
    return this.guard(() => this.stmts.streamRevisionAt.get(stream, position)) as number;
  }

  // ---- subscriptions ----

  subscribe(options: SubscriptionOptions): Subscription {
    if (this.closed) throw new StoreClosedError(this.storeId);
    if (typeof options?.handler !== "function") throw new InvalidArgumentError("subscribe: handler is required");
    if (options.name !== undefined) {
      if (typeof options.name !== "string" || options.name === "") {
        throw new InvalidArgumentError("subscription name must be a non-empty string");
      }
      if (this.activeNames.has(options.name)) {
        throw new InvalidArgumentError(`subscription "${options.name}" is already running on this store`);
      }
    }
    const sub = new SubscriptionImpl(this, options);
    if (options.name) this.activeNames.add(options.name);
    this.subscriptions.add(sub);
    this.ensurePolling();
    sub.start();
    return sub;
  }

  /** @internal */
  removeSubscription(sub: SubscriptionImpl): void {
    this.subscriptions.delete(sub);
    if (sub.name) this.activeNames.delete(sub.name);
    if (this.subscriptions.size === 0 && this.pollTimer) {
      clearInterval(this.pollTimer);
      this.pollTimer = undefined;
    }
  }

  private notify(): void {
    for (const sub of this.subscriptions) sub.wake();
  }

  /**
   * Other processes/threads commit through their own connections; `PRAGMA data_version` changes on this connection
   * when any other connection commits, which is a cheap check (no table read) for the poll.
   */
  private ensurePolling(): void {
    if (this.pollTimer) return;
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

  get isClosed(): boolean {
    return this.closed;
  }

  /** @internal runs before the store closes (projections stop and close their read models). */
  addCloseHook(hook: () => Promise<void> | void): void {
    this.closeHooks.add(hook);
  }

  /** @internal */
  removeCloseHook(hook: () => Promise<void> | void): void {
    this.closeHooks.delete(hook);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await Promise.allSettled([...this.closeHooks].map((h) => h()));
    this.closeHooks.clear();
    await Promise.all([...this.subscriptions].map((s) => s.stop()));
    if (this.closed) return;
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
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

function validateStream(stream: unknown): asserts stream is string {
  if (typeof stream !== "string" || stream === "" || stream.length > 500) {
    throw new InvalidArgumentError(`stream must be a non-empty string (max 500 chars), got ${JSON.stringify(stream)}`);
  }
  if (stream.startsWith("$")) throw new InvalidArgumentError(`stream names starting with "$" are reserved: ${stream}`);
}

function validateExpected(expected: unknown): void {
  if (expected === "any" || expected === "no_stream" || expected === "stream_exists") return;
  if (typeof expected === "number" && Number.isInteger(expected) && expected >= -1) return;
  throw new InvalidArgumentError(
    `expectedRevision must be "any", "no_stream", "stream_exists" or an integer >= -1, got ${JSON.stringify(expected)}`,
  );
}

function normLimit(limit: number | undefined): number {
  if (limit === undefined) return -1; // SQLite: LIMIT -1 = no limit
  if (!Number.isInteger(limit) || limit < 0) throw new InvalidArgumentError(`limit must be an integer >= 0`);
  return limit;
}

function sleep(ms: number, signal: { wake?: () => void }): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.wake = undefined;
      resolve();
    }
    signal.wake = done;
  });
}

/**
 * Catch-up then live subscription. One async loop per subscription: read a batch after `position`, hand each event to
 * the handler (retrying the same event while it throws), advance `position` (and the durable checkpoint) only after
 * success, then wait for a wake-up (an in-process append or the data_version poll).
 */
class SubscriptionImpl implements Subscription {
  readonly name?: string;
  private pos: number;
  private revision = -1;
  private stopped = false;
  private inHandler = false;
  private dirty = true;
  private wakeFn: (() => void) | undefined;
  private readonly sleeper: { wake?: () => void } = {};
  private loop: Promise<void> = Promise.resolve();
  private waiters: { target: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly types: string | null;

  constructor(
    private readonly store: SqliteEventStore,
    private readonly options: SubscriptionOptions,
  ) {
    this.name = options.name;
    this.types = options.types ? JSON.stringify(options.types) : null;
    const stored = options.name ? store.readCheckpoint(options.name) : null;
    this.pos = stored ?? options.afterPosition ?? 0;
    if (options.stream !== undefined && options.stream !== "$all") {
      this.revision = store.streamRevisionAt(options.stream, this.pos);
    }
  }

  get position(): number {
    return this.pos;
  }

  start(): void {
    this.loop = this.run();
  }

  wake(): void {
    this.dirty = true;
    this.wakeFn?.();
  }

  caughtUp(position?: number): Promise<void> {
    if (this.stopped) return Promise.reject(new SubscriptionStoppedError(this.name));
    const target = position ?? this.store.headPosition();
    if (this.pos >= target) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ target, resolve, reject });
      this.wake();
    });
  }

  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.wakeFn?.();
      this.sleeper.wake?.();
      for (const w of this.waiters) w.reject(new SubscriptionStoppedError(this.name));
      this.waiters = [];
    }
    // Called from inside the handler (e.g. "stop after this event"): awaiting the loop would deadlock; it ends as soon
    // as the handler returns.
    if (!this.inHandler) await this.loop;
    this.store.removeSubscription(this);
  }

  private advance(position: number): void {
    if (position <= this.pos) return;
    // Durable first: if the checkpoint write fails, the in-memory position stays put and the event is redelivered.
    if (this.name) this.store.saveCheckpoint(this.name, position);
    this.pos = position;
    if (this.waiters.length) {
      const still = [];
      for (const w of this.waiters) {
        if (this.pos >= w.target) w.resolve();
        else still.push(w);
      }
      this.waiters = still;
    }
  }

  private async run(): Promise<void> {
    const batchSize = this.options.batchSize ?? 256;
    const stream =
      this.options.stream !== undefined && this.options.stream !== "$all" ? this.options.stream : undefined;
    while (!this.stopped) {
      if (!this.dirty) {
        await new Promise<void>((resolve) => {
          this.wakeFn = resolve;
        });
        this.wakeFn = undefined;
        continue;
      }
      this.dirty = false;
      try {
        for (;;) {
          if (this.stopped || this.store.isClosed) return;
          const upto = this.store.headPosition();
          const batch = this.store.readForSubscription({
            after: this.pos,
            upto,
            limit: batchSize,
            types: this.types,
            prefix: this.options.streamPrefix ?? null,
            stream,
            revision: this.revision,
          });
          for (const event of batch) {
            const ok = await this.deliver(event);
            if (!ok) return; // stopped while retrying
            if (stream !== undefined) this.revision = event.revision;
            this.advance(event.position);
          }
          if (batch.length < batchSize) {
            // Everything up to `upto` was scanned (the rest was filtered out): move the checkpoint over it.
            this.advance(upto);
            break;
          }
        }
      } catch (error) {
        if (this.stopped || this.store.isClosed) return;
        // A store-level failure (busy, I/O): wait and rescan from the last good position.
        this.dirty = true;
        await sleep(this.options.retryDelayMs ?? 100, this.sleeper);
        void error;
      }
    }
  }

  /** Returns false when the subscription stopped before the event was handled. */
  private async deliver(event: RecordedEvent): Promise<boolean> {
    for (let attempt = 1; ; attempt++) {
      if (this.stopped) return false;
      let failure: { error: unknown } | undefined;
      this.inHandler = true;
      try {
        await this.options.handler(event);
      } catch (error) {
        failure = { error };
      } finally {
        this.inHandler = false;
      }
      if (!failure) return true;
      let verdict: unknown = null;
      try {
        verdict = this.options.onError?.(failure.error, event, attempt);
      } catch {
        // a throwing onError must not kill the loop
      }
      if (verdict === "skip") return true;
      await sleep(this.options.retryDelayMs ?? 100, this.sleeper);
    }
  }
}
