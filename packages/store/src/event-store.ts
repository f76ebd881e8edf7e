/** Opens an event store on the backend its options name: PostgreSQL for a `postgres://` URL, else SQLite. */
import { PostgresEventStore } from "./postgres/event-store.js";
import { removeSqliteStore, SqliteEventStore } from "./sqlite/event-store.js";
import type { EventStore, EventStoreOptions } from "./types.js";

export { PostgresEventStore, SqliteEventStore };

/**
 * Opens (creating if needed) an event store: with `url` (`postgres://…`) the store `storeId` in that PostgreSQL
 * database (connecting lazily: the first call, or `ready()`, rejects with StoreUnavailableError when the server cannot
 * be reached), otherwise the SQLite file `{directory}/{storeId}.sqlite` (opened at once).
 */
export function openEventStore(options: EventStoreOptions): EventStore {
  if (options?.url !== undefined) return new PostgresEventStore({ ...options, url: options.url });
  return new SqliteEventStore(options);
}

/**
 * Deletes a closed SQLite store's files (`{storeId}.sqlite` and its `-wal`/`-shm`), e.g. for remove_plugin with
 * purge. The store must be closed (checked for stores opened by this thread; other processes must be stopped first).
 */
export function removeEventStore(directory: string, storeId: string): void {
  removeSqliteStore(directory, storeId);
}
