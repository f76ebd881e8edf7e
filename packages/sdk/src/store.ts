/**
 * The plugin's own event store (the original's per-plugin ReckonDB store + evoq), opened from `getConfig()`:
 * file `{paths.store}/{storeId}.sqlite`, read models under `paths.sqlite`. Nothing here takes a path or a plugin
 * name, so a plugin's SDK can only ever reach its own store. In cluster mode (`getConfig().cluster`) the events live
 * in the cluster's PostgreSQL as store `plugin.{name}[.{storeId}]` (cluster-store.ts), shared by every node; read
 * models stay SQLite files of this node, projected from the shared events (woken by LISTEN/NOTIFY), and a named
 * subscription's checkpoint is this node's own (`{name}@{nodeId}`).
 *
 *   export const storeConfig = () => ({ durability: "NORMAL" });
 *   store.projection({ name: "tasks", setup: (db) => db.exec("CREATE TABLE ..."), apply: (db, e) => {...} });
 *   await store.dispatch(task, id, { type: "create_task_v1", data }, { consistency: "strong" });
 *   store.query("tasks", "SELECT * FROM tasks WHERE board = ?", board);
 *
 * Inside the daemon (and the test harness) the host opens the store at load stage "store" when the module exports
 * `storeConfig()`, and closes it (projections and subscriptions first) at unload. Standalone (no host), the first
 * call opens it from the standalone config.
 */
import { rmSync } from "node:fs";
import { join } from "node:path";
import {
  type AggregateDefinition,
  type Command,
  CommandRejected,
  type DispatchOptions,
  type DispatchResult,
  type EventStore,
  loadAggregate,
  openEventStore,
  type Projection,
  type ReadAllOptions,
  type ReadStreamOptions,
  type RecordedEvent,
  type Subscription,
  type SubscriptionOptions,
  startProjection,
  dispatch as storeDispatch,
} from "@hecate/store";
import { clusterStoreId } from "./cluster-store.js";
import { clusterStore, getConfig } from "./config.js";
import type { StoreConfig } from "./contract.js";
import { HttpError } from "./contract.js";
import { isValidPluginName } from "./paths.js";
import { onTerminate } from "./runtime/hooks.js";

export { CommandRejected, reject } from "@hecate/store";
export type { AggregateDefinition, Command, DispatchResult, Projection, RecordedEvent, Subscription };

/** Read-model connection type (better-sqlite3), as given to projection `setup`/`apply`. */
export type ReadModelDb = Projection["db"];

export class PluginStoreError extends Error {
  constructor(
    readonly code: "store_not_configured" | "invalid_store_id" | "invalid_projection" | "unknown_projection",
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "PluginStoreError";
  }
}

interface OpenStore {
  store: EventStore;
  projections: Map<string, Projection>;
  /** How each running projection was defined (to start it again in `rebuild`). */
  definitions: Map<string, ProjectionDefinition>;
  subscriptions: Set<Subscription>;
}

let opened: OpenStore | undefined;

/**
 * Cluster mode: connections of this plugin's pool (per worker; the LISTEN connection comes on top). Appends to one
 * store are serialised by PostgreSQL anyway, so more would mostly hold server slots: nodes x plugins add up.
 */
const POOL_SIZE = 4;

/**
 * Opens the plugin's store from `getConfig()` (idempotent). Hosts call it at load stage "store"; plugins normally
 * never need to (every helper below opens it on first use).
 */
export function open(options: Pick<StoreConfig, "durability"> = {}): EventStore {
  if (opened) return opened.store;
  const config = getConfig();
  // Inside a host the store exists only when the module exports storeConfig() (the host opened it at load).
  if (config.storeId === null && !config.standalone)
    throw new PluginStoreError("store_not_configured", "the plugin has no store: export storeConfig() to get one");
  const storeId = config.storeId ?? config.pluginName;
  // The store file is `{directory}/{storeId}.sqlite`: a storeId with "/" or ".." would leave the plugin's store dir.
  if (!isValidPluginName(storeId))
    throw new PluginStoreError("invalid_store_id", `storeId ${JSON.stringify(storeId)} is not a valid name`, "storeId");
  const cluster = clusterStore();
  const store = cluster
    ? openEventStore({ url: cluster.url, storeId: clusterStoreId(config.pluginName, storeId), poolSize: POOL_SIZE })
    : openEventStore({ directory: config.paths.store, storeId, durability: options.durability ?? "FULL" });
  opened = { store, projections: new Map(), definitions: new Map(), subscriptions: new Set() };
  onTerminate(close);
  return store;
}

/** True when the store is open in this plugin instance. */
export function isOpen(): boolean {
  return opened !== undefined;
}

function current(): OpenStore {
  if (!opened) open();
  return opened!;
}

/** The underlying `@hecate/store` EventStore (append, snapshots...). */
export function eventStore(): EventStore {
  return current().store;
}

/**
 * Dispatches a command to an aggregate (`{aggregate.name}-{id}` stream): load, decide, append with optimistic
 * concurrency; `consistency: "strong"` waits for this plugin's projections. A `decide` rejection throws
 * `CommandRejected` (see `asHttpError`).
 */
export function dispatch<S, C extends Command, E extends { type: string; data: unknown }>(
  aggregate: AggregateDefinition<S, C, E>,
  aggregateId: string,
  command: C,
  options?: DispatchOptions,
): Promise<DispatchResult<E>> {
  return storeDispatch(current().store, aggregate, aggregateId, command, options);
}

/** Current state of an aggregate (snapshot + tail), without dispatching anything. */
export function load<S>(aggregate: AggregateDefinition<S, Command, { type: string; data: unknown }>, id: string) {
  return loadAggregate(current().store, aggregate, id);
}

export function readStream(stream: string, options?: ReadStreamOptions): Promise<RecordedEvent[]> {
  return current().store.readStream(stream, options);
}

export function readAll(options?: ReadAllOptions): Promise<RecordedEvent[]> {
  return current().store.readAll(options);
}

/**
 * A catch-up + live subscription (named = durable checkpoint). Stopped automatically when the store closes. In cluster
 * mode the checkpoint of a named subscription is this node's (stored as `{name}@{nodeId}`): every node's subscription
 * sees every event once, as its projections do. Work that must happen once per cluster goes in a `singleton` job or
 * behind an idempotent command id.
 */
export function subscribe(options: SubscriptionOptions): Subscription {
  const o = current();
  const node = clusterStore()?.nodeId;
  const sub = o.store.subscribe(
    options.name !== undefined && node ? { ...options, name: nodeCheckpoint(options.name, node) } : options,
  );
  o.subscriptions.add(sub);
  return {
    get name() {
      return options.name;
    },
    get position() {
      return sub.position;
    },
    caughtUp: (position) => sub.caughtUp(position),
    stop: async () => {
      o.subscriptions.delete(sub);
      await sub.stop();
    },
  };
}

/** The stored checkpoint name of a named subscription on this node (cluster mode). */
export function nodeCheckpoint(name: string, nodeId: string): string {
  return `${name}@${nodeId}`;
}

export interface ProjectionDefinition {
  /** Unique per plugin; also the default read-model file name (`{paths.sqlite}/{file ?? name}.sqlite`). */
  name: string;
  /** Read-model file name (without `.sqlite`) when several projections share one database. */
  file?: string;
  setup?(db: ReadModelDb): void;
  /** Applies one event; runs in the same read-model transaction as the checkpoint. Synchronous. */
  apply(db: ReadModelDb, event: RecordedEvent): void;
  /**
   * The read model's shape version (default 1). Bump it when a new plugin version changes what `setup`/`apply`
   * write: that version builds a new read-model file (`{file}.v{version}.sqlite`) from the whole store, while the
   * previous version, still serving during a zero-downtime upgrade, keeps its own file; files two or more versions
   * old are deleted (unless `file` is shared with other projections).
   */
  version?: number;
  /** Drops the tables `setup` created: needed by `store.rebuild(name)`. */
  reset?(db: ReadModelDb): void;
  types?: string[];
  streamPrefix?: string;
  retryDelayMs?: number;
  onError?: (error: unknown, event: RecordedEvent, attempt: number) => void | "skip";
}

/** Starts a projection into the plugin's SQLite read model (exactly-once per event, checkpoint in the same tx). */
export function projection(def: ProjectionDefinition): Projection {
  const o = current();
  const file = def.file ?? def.name;
  if (typeof def.name !== "string" || !isValidPluginName(def.name))
    throw new PluginStoreError("invalid_projection", `projection name ${JSON.stringify(def.name)} is invalid`, "name");
  if (!isValidPluginName(file))
    throw new PluginStoreError("invalid_projection", `read-model file ${JSON.stringify(file)} is invalid`, "file");
  if (o.projections.has(def.name))
    throw new PluginStoreError("invalid_projection", `projection "${def.name}" is already running`, "name");
  return startDefined(o, def, false);
}

function startDefined(o: OpenStore, def: ProjectionDefinition, rebuild: boolean): Projection {
  const { file = def.name, version = 1, ...rest } = def;
  if (!Number.isInteger(version) || version < 1)
    throw new PluginStoreError(
      "invalid_projection",
      `projection "${def.name}": version must be a positive integer`,
      "version",
    );
  const dir = getConfig().paths.sqlite;
  const fileOf = (v: number) => join(dir, v === 1 ? `${file}.sqlite` : `${file}.v${v}.sqlite`);
  // Older files of a read model this projection owns (no shared `file`): two versions back cannot be serving.
  if (def.file === undefined)
    for (let v = 1; v <= version - 2; v++)
      for (const suffix of ["", "-wal", "-shm"]) rmSync(fileOf(v) + suffix, { force: true });
  const p = startProjection(o.store, { ...rest, readModel: fileOf(version), rebuild });
  o.projections.set(def.name, p);
  o.definitions.set(def.name, def);
  return p;
}

/**
 * Rebuilds a running projection from the store now: stops it, drops its read model with its `reset`, and starts it
 * again from the first event; resolves once it caught up. Queries by name (`query`, `readModel`) use the new one; a
 * `Projection` object kept from before is stopped.
 */
export async function rebuild(name: string): Promise<Projection> {
  const o = current();
  const old = projectionNamed(name);
  const def = o.definitions.get(name)!;
  if (typeof def.reset !== "function")
    throw new PluginStoreError(
      "invalid_projection",
      `projection "${name}" has no reset(db): it cannot be rebuilt`,
      "reset",
    );
  o.projections.delete(name);
  await old.stop();
  const p = startDefined(o, def, true);
  await p.caughtUp(await o.store.headPosition());
  return p;
}

function projectionNamed(name: string): Projection {
  const p = current().projections.get(name);
  if (!p) throw new PluginStoreError("unknown_projection", `no projection named "${name}" is running`, "projection");
  return p;
}

/** The read-model connection of a projection (for prepared statements of your own). */
export function readModel(name: string): ReadModelDb {
  return projectionNamed(name).db;
}

/** Rows of a read-only query on a projection's read model; writes are refused (they belong in `apply`). */
export function query<T = Record<string, unknown>>(projectionName: string, sql: string, ...params: unknown[]): T[] {
  return readStatement(projectionNamed(projectionName).db, sql).all(...params) as T[];
}

/** The part of a better-sqlite3 statement `query()` uses. */
interface Statement {
  readonly reader: boolean;
  readonly readonly: boolean;
  all(...params: unknown[]): unknown[];
}
/** Statements a read model's queries prepared, by SQL text (a handler runs the same few queries again and again). */
const statements = new WeakMap<ReadModelDb, Map<string, Statement>>();
/** Distinct SQL texts kept per read model: queries built with values inlined would otherwise grow it forever. */
const MAX_STATEMENTS = 256;

/**
 * A prepared read-only statement for `sql`, prepared once per read model: better-sqlite3's prepare() costs more
 * than running a small query (measured ~10 µs of a ~25 µs GET of the taskboard's list).
 */
function readStatement(db: ReadModelDb, sql: string): Statement {
  let cache = statements.get(db);
  if (!cache) {
    cache = new Map();
    statements.set(db, cache);
  }
  let stmt = cache.get(sql);
  if (!stmt) {
    stmt = db.prepare(sql) as unknown as Statement;
    if (!stmt.reader || !stmt.readonly)
      throw new PluginStoreError("invalid_projection", "query() runs read-only statements only", "sql");
    if (cache.size >= MAX_STATEMENTS) cache.clear();
    cache.set(sql, stmt);
  }
  return stmt;
}

/** First row of a read-only query, or undefined. */
export function queryOne<T = Record<string, unknown>>(
  projectionName: string,
  sql: string,
  ...params: unknown[]
): T | undefined {
  return query<T>(projectionName, sql, ...params)[0];
}

/** Waits until the named projections (default all) applied everything stored so far. */
export async function caughtUp(names?: string[]): Promise<void> {
  const o = current();
  const head = await o.store.headPosition();
  const selected = names ?? [...o.projections.keys()];
  await Promise.all(selected.map((n) => projectionNamed(n).caughtUp(head)));
}

/**
 * Maps a `CommandRejected` to an HttpError for handlers: 404 when the rejection code ends in `_not_found`, else 409
 * (or `statuses[code]`), with the rejection code and details. Anything else is returned unchanged, so
 * `catch (e) { throw store.asHttpError(e) }` keeps real faults as 500s.
 */
export function asHttpError(err: unknown, statuses: Record<string, number> = {}): unknown {
  if (err instanceof CommandRejected) {
    const code = err.rejectionCode;
    const status = statuses[code] ?? (code.endsWith("_not_found") ? 404 : 409);
    const message = err.message.replace(/^.* rejected: /, "");
    return new HttpError(status, code, message, err.details);
  }
  return err;
}

/** Stops subscriptions and projections, then closes the store. Hosts call it at unload; idempotent. */
export async function close(): Promise<void> {
  const o = opened;
  if (!o) return;
  opened = undefined;
  await Promise.allSettled([...o.subscriptions].map((s) => s.stop()));
  await Promise.allSettled([...o.projections.values()].map((p) => p.stop()));
  await o.store.close();
}
