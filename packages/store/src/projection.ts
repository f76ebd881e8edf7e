import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import Database from "better-sqlite3";
import { BaseEventStore } from "./core/base-store.js";
import { InvalidArgumentError } from "./errors.js";
import type { EventStore, RecordedEvent, Subscription } from "./types.js";

export interface ProjectionOptions {
  /** Unique per store; also the checkpoint key inside the read-model file. */
  name: string;
  /** Path of the read-model SQLite file (separate from the event store). */
  readModel: string;
  /** Creates tables/indexes; runs in a transaction at every start, so use IF NOT EXISTS. */
  setup?(db: Database.Database): void;
  /**
   * The read model's shape version (default 1). When it differs from the version the read-model file was built
   * with, the projection is rebuilt from the store: `reset(db)` drops the old tables, the checkpoint goes back to 0,
   * `setup` runs, and every event is applied again (in the background; `caughtUp()` waits for it).
   */
  version?: number;
  /** Drops what `setup`/`apply` created (needed for a rebuild: a version change or `rebuild: true`). */
  reset?(db: Database.Database): void;
  /** Rebuild from the store at this start even if the version did not change (see `version`). */
  rebuild?: boolean;
  /** Applies one event; runs in the same read-model transaction as the checkpoint update. Must be synchronous. */
  apply(db: Database.Database, event: RecordedEvent): void;
  types?: string[];
  streamPrefix?: string;
  retryDelayMs?: number;
  onError?: (error: unknown, event: RecordedEvent, attempt: number) => void | "skip";
}

export interface Projection {
  readonly name: string;
  /** The read-model connection (query it; writes belong in `apply`). */
  readonly db: Database.Database;
  /** Last store position applied (or scanned past). */
  readonly position: number;
  caughtUp(position?: number): Promise<void>;
  /** Stops the subscription and closes the read-model file. Stop projections before closing their store. */
  stop(): Promise<void>;
}

/** Projections running in this process, per store: `dispatch(..., {consistency: "strong"})` waits on them. */
const registry = new WeakMap<EventStore, Map<string, Projection>>();

export function registeredProjections(store: EventStore): string[] {
  return [...(registry.get(store)?.keys() ?? [])];
}

/**
 * Resolves true once every named projection (default: all registered for this store) reached `position`, or the
 * names that did not within `timeoutMs`.
 */
export async function waitForProjections(
  store: EventStore,
  position: number,
  names: string[] | undefined,
  timeoutMs: number,
): Promise<true | string[]> {
  const map = registry.get(store) ?? new Map<string, Projection>();
  const selected = names ?? [...map.keys()];
  const missing = selected.filter((n) => !map.has(n));
  if (missing.length) throw new InvalidArgumentError(`no running projection named ${missing.join(", ")} on this store`);
  const pending = new Set(selected);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const all = Promise.all(
    selected.map((n) =>
      map
        .get(n)!
        .caughtUp(position)
        .then(() => void pending.delete(n)),
    ),
  );
  try {
    const r = await Promise.race([all, timeout]);
    return r === "timeout" ? [...pending] : true;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Inside the start transaction: when the read model was built with another version than `options.version` (or
 * `options.rebuild`), `reset` drops it and the checkpoint is removed, so the projection applies every event again.
 * The version is recorded per projection name in `_hecate_projection_versions` (a file built before versions
 * existed counts as version 1).
 */
function resetIfChanged(db: Database.Database, name: string, options: ProjectionOptions, hasCheckpoint: boolean): void {
  const version = options.version ?? 1;
  if (!Number.isInteger(version) || version < 1)
    throw new InvalidArgumentError(`projection "${name}": version must be a positive integer`);
  db.exec("CREATE TABLE IF NOT EXISTS _hecate_projection_versions (name TEXT PRIMARY KEY, version INTEGER NOT NULL)");
  const stored = db.prepare("SELECT version FROM _hecate_projection_versions WHERE name = ?").pluck().get(name) as
    | number
    | undefined;
  const built = stored ?? (hasCheckpoint ? 1 : undefined);
  if (built !== undefined && (built !== version || options.rebuild)) {
    if (typeof options.reset !== "function")
      throw new InvalidArgumentError(
        `projection "${name}" must be rebuilt (read model version ${built}, now ${version}): give it reset(db), which drops its tables`,
      );
    options.reset(db);
    db.prepare("DELETE FROM _hecate_projection_checkpoints WHERE name = ?").run(name);
  }
  db.prepare(
    "INSERT INTO _hecate_projection_versions(name, version) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version",
  ).run(name, version);
}

/**
 * A projection into a separate SQLite read model (read models stay per node, whatever backend holds the events). Each event is applied and the projection's checkpoint (a table in
 * the read-model file) updated in ONE read-model transaction, so a crash at any point neither applies an event twice
 * nor skips one: the next start resumes after the last committed checkpoint.
 */
export function startProjection(store: EventStore, options: ProjectionOptions): Projection {
  const { name } = options;
  if (typeof name !== "string" || name === "") throw new InvalidArgumentError("projection name is required");
  if (typeof options.apply !== "function") throw new InvalidArgumentError("projection apply() is required");
  const map = registry.get(store) ?? new Map<string, Projection>();
  if (map.has(name)) throw new InvalidArgumentError(`projection "${name}" is already running on this store`);
  mkdirSync(dirname(options.readModel), { recursive: true });
  const db = new Database(options.readModel, { timeout: 10_000 });
  let sub: Subscription;
  try {
    db.pragma("journal_mode = WAL");
    // NORMAL is enough here: in WAL mode a process crash never loses a committed transaction, and on power loss the
    // checkpoint and the applied rows are lost TOGETHER (same file, same transaction), so the projection just re-applies.
    db.pragma("synchronous = NORMAL");
    db.exec(`CREATE TABLE IF NOT EXISTS _hecate_projection_checkpoints (
      name TEXT PRIMARY KEY, store_id TEXT NOT NULL, position INTEGER NOT NULL, updated_at TEXT NOT NULL)`);
    const getCp = db.prepare("SELECT position FROM _hecate_projection_checkpoints WHERE name = ?").pluck();
    db.transaction(() => {
      resetIfChanged(db, name, options, getCp.get(name) !== undefined);
      options.setup?.(db);
    }).immediate();
    const setCp = db.prepare(`INSERT INTO _hecate_projection_checkpoints(name, store_id, position, updated_at)
      VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at`);
    const applyTx = db.transaction((event: RecordedEvent) => {
      // Re-check inside the write transaction: another process running the same projection may have applied it.
      const cp = (getCp.get(name) as number | undefined) ?? 0;
      if (event.position <= cp) return;
      options.apply(db, event);
      setCp.run(name, store.storeId, event.position, new Date().toISOString());
    });
    const start = (getCp.get(name) as number | undefined) ?? 0;
    sub = store.subscribe({
      afterPosition: start,
      types: options.types,
      streamPrefix: options.streamPrefix,
      retryDelayMs: options.retryDelayMs,
      onError: options.onError,
      handler: (event) => applyTx.immediate(event),
    });
  } catch (error) {
    db.close();
    throw error;
  }
  let stopped = false;
  let removeHook = () => {};
  const projection: Projection = {
    name,
    db,
    get position() {
      return sub.position;
    },
    caughtUp: (position) => sub.caughtUp(position),
    async stop() {
      if (stopped) return;
      stopped = true;
      removeHook();
      map.delete(name);
      await sub.stop();
      db.close();
    },
  };
  if (store instanceof BaseEventStore) {
    removeHook = () => {
      store.removeCloseHook(hook);
    };
    const hook = () => projection.stop();
    store.addCloseHook(hook);
  }
  map.set(name, projection);
  registry.set(store, map);
  return projection;
}
