/**
 * The PostgreSQL schema: every store of a database shares these tables, keyed by `store_id` (so daemons on one
 * database can share stores, and a new store needs no DDL). Created once per pool, under an advisory lock so several
 * daemons starting together do not race on CREATE.
 *
 * Positions and the sequence-gap problem: a `bigserial`/sequence position is handed out at INSERT time but becomes
 * visible at COMMIT time, so two concurrent appends can commit out of order (position 8 visible before 7); a reader
 * that saw 8 and moves its cursor past it never sees 7. Here each store has ONE counter row (`hecate_stores.head`)
 * that the append transaction locks (`SELECT … FOR UPDATE`) before reading it and updates before committing: appends
 * to a store are serialised, positions are handed out in commit order and without gaps (a rolled-back append rolls
 * the counter back too), and a reader that sees position p can already see every position below p. We chose this
 * over transaction-id visibility (`pg_snapshot_xmin` filtering) because it keeps `$all` reads a plain range scan and
 * also gives the gapless positions the SQLite backend has; the cost is one writer per store at a time, which is what
 * SQLite does too (BEGIN IMMEDIATE), and appends to different stores still run in parallel.
 *
 * The append itself is the function `hecate_append` (schema 2): one call is one statement, so one transaction and one
 * round trip (schema 1 took BEGIN + lock, a check-and-write statement and COMMIT). It takes the lock first; its later
 * statements each get a new snapshot (READ COMMITTED, volatile function), so the expected-revision check sees every
 * append committed before the lock was granted. Duplicate ids are caught by the UNIQUE (store_id, id) index the
 * INSERT probes anyway (error 23505, sorted out by the caller), not by a separate lookup.
 *
 * Upgrades: `migrate` brings an older database up to SCHEMA_VERSION under the advisory lock (every statement of DDL is
 * idempotent: IF NOT EXISTS / OR REPLACE). A process of an older version refuses a newer database (STORE_SCHEMA_TOO_NEW).
 */
import type pg from "pg";

export const SCHEMA_VERSION = 2;
/** LISTEN/NOTIFY channel; the payload is `{storeId}:{head}`. */
export const CHANNEL = "hecate_store_events";
const LOCK_KEY = "hecate_store_schema";

const DDL = `
CREATE TABLE IF NOT EXISTS hecate_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS hecate_stores (
  store_id   text PRIMARY KEY,
  head       bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS hecate_events (
  store_id   text NOT NULL,
  position   bigint NOT NULL,
  id         text NOT NULL,
  stream     text NOT NULL,
  revision   bigint NOT NULL,
  type       text NOT NULL,
  data       json NOT NULL,
  metadata   json NOT NULL,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (store_id, position),
  UNIQUE (store_id, id),
  UNIQUE (store_id, stream, revision)
);
CREATE TABLE IF NOT EXISTS hecate_checkpoints (
  store_id   text NOT NULL,
  name       text NOT NULL,
  position   bigint NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (store_id, name)
);
CREATE TABLE IF NOT EXISTS hecate_snapshots (
  store_id   text NOT NULL,
  stream     text NOT NULL,
  revision   bigint NOT NULL,
  state      json NOT NULL,
  version    integer NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (store_id, stream)
);
-- Every committed append notifies listeners (payload: store id and new head); NOTIFY is delivered at commit.
CREATE OR REPLACE FUNCTION hecate_notify_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${CHANNEL}', NEW.store_id || ':' || NEW.head);
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER hecate_stores_notify AFTER UPDATE OF head ON hecate_stores
  FOR EACH ROW WHEN (NEW.head <> OLD.head) EXECUTE FUNCTION hecate_notify_append();
-- The append (schema 2). status: 'ok' (written at positions o_head+1…, revisions o_current+1…), 'wrong_revision'
-- (nothing written; o_current is the stream's revision) or 'missing' (no counter row: the store was removed).
CREATE OR REPLACE FUNCTION hecate_append(p_store text, p_stream text, p_expected text, p_expected_revision bigint,
  p_ids text[], p_types text[], p_data json[], p_metadata json[], p_created_at timestamptz,
  OUT status text, OUT o_head bigint, OUT o_current bigint) LANGUAGE plpgsql AS $$
BEGIN
  SELECT s.head INTO o_head FROM hecate_stores s WHERE s.store_id = p_store FOR UPDATE;
  IF NOT FOUND THEN
    status := 'missing';
    RETURN;
  END IF;
  SELECT coalesce(max(e.revision), -1) INTO o_current FROM hecate_events e
    WHERE e.store_id = p_store AND e.stream = p_stream;
  IF NOT (p_expected = 'any' OR (p_expected = 'no_stream' AND o_current = -1)
      OR (p_expected = 'stream_exists' AND o_current <> -1) OR (p_expected = 'exact' AND o_current = p_expected_revision))
  THEN
    status := 'wrong_revision';
    RETURN;
  END IF;
  INSERT INTO hecate_events(store_id, position, id, stream, revision, type, data, metadata, created_at)
    SELECT p_store, o_head + u.o, u.id, p_stream, o_current + u.o, u.type, u.data, u.metadata, p_created_at
    FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY AS u(id, type, data, metadata, o);
  UPDATE hecate_stores s SET head = o_head + cardinality(p_ids) WHERE s.store_id = p_store;
  status := 'ok';
END $$;
INSERT INTO hecate_meta(key, value) VALUES ('schema_version', '${SCHEMA_VERSION}')
  ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE hecate_meta.value::int < excluded.value::int;
`;

/** Creates the tables and functions if missing or older than SCHEMA_VERSION; returns the version found after. */
export async function migrate(client: pg.ClientBase): Promise<number> {
  const installed = async () => {
    const t = await client.query<{ t: string | null }>("SELECT to_regclass('hecate_meta')::text AS t");
    if (t.rows[0]?.t == null) return 0;
    const r = await client.query<{ value: string }>("SELECT value FROM hecate_meta WHERE key = 'schema_version'");
    return Number(r.rows[0]?.value ?? 0);
  };
  // Already in place (the usual case): no DDL, so no table lock that would stall other daemons' appends.
  const found = await installed();
  if (found >= SCHEMA_VERSION) return found;
  await client.query("BEGIN");
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [LOCK_KEY]);
    // Another process may have migrated (maybe to a newer version) while we waited for the lock.
    if ((await installed()) < SCHEMA_VERSION) await client.query(DDL);
    const version = await installed();
    await client.query("COMMIT");
    return version;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}
