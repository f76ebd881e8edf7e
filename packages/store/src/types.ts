/**
 * Public API of the event store and the CQRS layer (the original's ReckonDB + evoq).
 * Implementations live beside this file; other packages import only from `@hecate/store`.
 */

/** `any`: no check; `no_stream`: stream must not exist; `stream_exists`: must exist; number: current revision must equal it. */
export type ExpectedRevision = "any" | "no_stream" | "stream_exists" | number;

export interface NewEvent {
  /** Event id (uuid). Re-appending an id already stored returns the original result and writes nothing. */
  id?: string;
  type: string;
  data: unknown;
  metadata?: Record<string, unknown>;
}

export interface RecordedEvent<D = unknown> {
  id: string;
  stream: string;
  /** 0-based revision within the stream. */
  revision: number;
  /** Global position, 1-based, strictly increasing without gaps. */
  position: number;
  type: string;
  data: D;
  metadata: Record<string, unknown>;
  /** ISO-8601 */
  createdAt: string;
}

export interface AppendResult {
  stream: string;
  /** Revision of the last event of this append (the stream's new current revision). */
  revision: number;
  /** Global position of the last event of this append. */
  position: number;
  events: RecordedEvent[];
  /** True when every event id was already stored (idempotent replay): nothing was written. */
  duplicate: boolean;
}

export interface ReadStreamOptions {
  direction?: "forward" | "backward";
  /** Inclusive. Forward default 0, backward default the last revision. */
  fromRevision?: number;
  limit?: number;
}

export interface ReadAllOptions {
  direction?: "forward" | "backward";
  /** Exclusive for forward reads (events after this position); default 0. */
  afterPosition?: number;
  limit?: number;
  /** Backward reads only: events strictly before this position (default: from the head). */
  beforePosition?: number;
  types?: string[];
  streamPrefix?: string;
}

export interface SubscriptionOptions {
  /** Durable checkpoint name; the subscription resumes after its last checkpoint. Omit for a volatile one from `afterPosition`. */
  name?: string;
  /** A stream name, or `$all` (default). */
  stream?: string;
  types?: string[];
  streamPrefix?: string;
  /** Volatile subscriptions start after this global position (default 0 = from the beginning). */
  afterPosition?: number;
  /**
   * Called once per event, in order. The checkpoint advances only after it resolves.
   * If it throws, the subscription retries the same event after `retryDelayMs` (at-least-once).
   */
  handler: (event: RecordedEvent) => void | Promise<void>;
  /** Default 100 ms. */
  retryDelayMs?: number;
  /** Events read per query (default 256). */
  batchSize?: number;
  /**
   * Called when the handler throws (attempt = 1, 2, ...). Return "skip" to give up on this event (the checkpoint then
   * moves past it); anything else retries it. Default: retry forever, logging nothing.
   */
  onError?: (error: unknown, event: RecordedEvent, attempt: number) => void | "skip";
}

export interface Subscription {
  readonly name?: string;
  /** Last global position handled. */
  readonly position: number;
  /** Resolves when the subscription has handled everything up to `position` (default: the store's head now). */
  caughtUp(position?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface Snapshot<S = unknown> {
  stream: string;
  revision: number;
  state: S;
  /** Version of the state's shape (AggregateDefinition.snapshotVersion); 0 by default. */
  version: number;
}

export interface EventStoreOptions {
  /** Store id: the SQLite file `{directory}/{storeId}.sqlite`, or the store's rows in PostgreSQL. */
  storeId: string;
  /**
   * `postgres://…` or `postgresql://…` selects the PostgreSQL backend (node-postgres); without it the store is SQLite
   * in `directory`. Stores opened on the same URL in one process share one connection pool and one LISTEN connection.
   */
  url?: string;
  /** SQLite: directory that holds this store's file(s); created if missing. Required without `url`. */
  directory?: string;
  /** SQLite `synchronous`, default "FULL". */
  durability?: "FULL" | "NORMAL";
  /** SQLite: size quota: `max_page_count` is set from it; an append beyond it fails with StoreDiskFullError. */
  maxSizeBytes?: number;
  /** SQLite: busy timeout waiting for another writer (default 10000 ms). */
  busyTimeoutMs?: number;
  /** SQLite: run `PRAGMA quick_check` at open (default true). */
  verifyOnOpen?: boolean;
  /** PostgreSQL: connections of the pool shared by the stores of this URL (default 10; the first store sets it). */
  poolSize?: number;
  /** PostgreSQL: how long to wait for a connection before StoreUnavailableError (default 5000 ms). */
  connectTimeoutMs?: number;
}

/**
 * The storage interface, implemented by the SQLite backend (src/sqlite/) and the PostgreSQL backend (src/postgres/).
 * Every I/O call is async; `subscribe` returns its handle at once (its reads run in the background).
 */
export interface EventStore {
  readonly storeId: string;
  /** Where the data lives: the SQLite file, or `postgres://host:port/db#storeId` (no password). */
  readonly location: string;
  /** Resolves once the backend is reachable and its schema is in place (every call waits for it anyway). */
  ready(): Promise<void>;
  append(stream: string, events: NewEvent[], options?: { expectedRevision?: ExpectedRevision }): Promise<AppendResult>;
  readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  readAll(options?: ReadAllOptions): Promise<RecordedEvent[]>;
  /** Current revision, -1 when the stream does not exist. */
  streamRevision(stream: string): Promise<number>;
  /** Highest global position, 0 when empty. */
  headPosition(): Promise<number>;
  /** One stored event by id, or null. */
  getEvent(id: string): Promise<RecordedEvent | null>;
  /** Stored position of a durable subscription checkpoint, or null. */
  readCheckpoint(name: string): Promise<number | null>;
  subscribe(options: SubscriptionOptions): Subscription;
  /** Keeps the latest per stream (an older revision of the same version is ignored). */
  saveSnapshot<S>(stream: string, revision: number, state: S, version?: number): Promise<void>;
  loadSnapshot<S>(stream: string): Promise<Snapshot<S> | null>;
  /** Stops subscriptions and projections, flushes and closes; later calls throw StoreClosedError. */
  close(): Promise<void>;
}

// ---- CQRS (evoq) ----

export interface Command<T extends string = string, D = unknown> {
  type: T;
  data: D;
  /** Command id: makes dispatch idempotent (events get ids derived from it). */
  id?: string;
  metadata?: Record<string, unknown>;
}

/** A business-rule rejection: returned by `decide`, thrown by `dispatch` as `CommandRejected`. */
export interface Rejection<C extends string = string> {
  rejected: true;
  code: C;
  message: string;
  details?: unknown;
}

export interface AggregateDefinition<
  S,
  C extends Command = Command,
  E extends { type: string; data: unknown } = { type: string; data: unknown },
> {
  /** e.g. "plugin": streams are `{name}-{id}`. */
  name: string;
  initialState: S;
  evolve(state: S, event: RecordedEvent | E): S;
  decide(command: C, state: S): E[] | Rejection;
  /** Take a snapshot every N events (default: never). */
  snapshotEvery?: number;
  /** Bump when `evolve` or the state shape changes: snapshots of another version are ignored (default 0). */
  snapshotVersion?: number;
}

export interface DispatchOptions {
  /** `strong`: wait until the projections named in `projections` (default all registered) reached the appended position. */
  consistency?: "eventual" | "strong";
  projections?: string[];
  /** Bounded retries on WrongExpectedRevision (default 5). */
  maxRetries?: number;
  timeoutMs?: number;
}

export interface DispatchResult<E = { type: string; data: unknown }> {
  stream: string;
  revision: number;
  position: number;
  events: RecordedEvent[];
  decided: E[];
  /** True when this command id was already handled: nothing was written, the original events are returned. */
  duplicate: boolean;
  /** The aggregate state after the command. */
  state?: unknown;
}
