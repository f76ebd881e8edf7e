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
 */
import type pg from "pg";

export const SCHEMA_VERSION = 1;
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
INSERT INTO hecate_meta(key, value) VALUES ('schema_version', '${SCHEMA_VERSION}') ON CONFLICT (key) DO NOTHING;
`;

/** Creates the tables if missing; refuses a database written by a newer schema. */
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
    await client.query(DDL);
    const version = await installed();
    await client.query("COMMIT");
    return version;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}
