/**
 * The backends the conformance suites (test/conformance/) run against. A "place" is a fresh, empty spot for the stores
 * of one test: a temp dir (SQLite), or a unique store-id suffix in the test's PostgreSQL (plus a temp dir for read
 * models). Opening the same store id twice in one place gives two connections to the same store.
 */
import { type EventStore, type EventStoreOptions, openEventStore } from "../src/index.js";
import { tempDir } from "./helpers.js";

export interface Place {
  /** For read models (and SQLite store files). */
  readonly dir: string;
  open(storeId: string, extra?: Partial<EventStoreOptions>): EventStore;
}

export interface Backend {
  readonly name: "sqlite" | "postgres";
  place(): Place;
}

export const sqliteBackend: Backend = {
  name: "sqlite",
  place() {
    const dir = tempDir();
    return { dir, open: (storeId, extra) => openEventStore({ directory: dir, storeId, ...extra }) };
  },
};

/** `url()` is read at open time: the server is started by the test file's `before`. */
export function postgresBackend(url: () => string): Backend {
  let places = 0;
  return {
    name: "postgres",
    place() {
      const tag = ++places;
      const dir = tempDir();
      return { dir, open: (storeId, extra) => openEventStore({ url: url(), storeId: `${storeId}-p${tag}`, ...extra }) };
    },
  };
}
