/**
 * This daemon as a node of a cluster: several daemons on one `HECATE_STORE_URL` (PostgreSQL) share the lifecycle
 * streams, and each one carries every lifecycle event out on its own disk (see ../lifecycle/README.md, "Cluster
 * mode"). Beside the event store this keeps four tables in the same database:
 *   hecate_cluster_packages        the package archives, content-addressed (sha256), written by the node that
 *                                  accepted the upload; every node fetches them by digest and extracts them itself
 *   hecate_cluster_nodes           the nodes (id, URLs, started / last seen)
 *   hecate_cluster_plugin_status   each node's own outcome per plugin (extracted / loaded / failed / unloaded /
 *                                  removed): per-node state is not an event of the shared aggregate, so N nodes
 *                                  reacting to one event never append N shared events
 *   hecate_cluster_settings_key    the key of secret settings, one for the cluster (a secret set through one node
 *                                  is read by the plugin on every node)
 * node-postgres directly (the store's pool is internal to @hecate/store): plain tables, no event semantics needed.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { isPostgresUnreachable } from "@hecate/store";
import pg from "pg";

export type NodePluginStatus =
  | "extracting"
  | "extracted"
  | "extract_failed"
  | "loaded"
  | "failed"
  | "unloaded"
  | "removed";

export interface NodeStatusRecord {
  node: string;
  status: NodePluginStatus;
  version: string | null;
  error: string | null;
  updatedAt: string;
}

export interface ClusterNodeInfo {
  node: string;
  url: string | null;
  adminUrl: string | null;
  startedAt: string;
  seenAt: string;
}

/** What the lifecycle service needs from the cluster (null in single-node mode). */
export interface LifecycleCluster {
  readonly nodeId: string;
  /** Stores the archive's bytes (idempotent) and returns its sha256. */
  storePackage(file: string): Promise<string>;
  /** Runs `fn` (store bytes, append their event) so that no package prune pass runs in between. */
  withPackageLock<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Writes the archive with this digest to `dest` (verified against the digest; atomic rename). Errors with `code`
   * `package_missing` / `digest_mismatch` are final; others (PostgreSQL unreachable) are worth a retry.
   */
  fetchPackage(sha256: string, dest: string): Promise<void>;
  /** This node's outcome for a plugin. */
  recordStatus(
    plugin: string,
    status: NodePluginStatus,
    extra?: { version?: string | null; error?: string | null },
  ): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS hecate_cluster_packages (
  sha256 text PRIMARY KEY, bytes bytea NOT NULL, size bigint NOT NULL, stored_by text NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS hecate_cluster_nodes (
  node_id text PRIMARY KEY, url text, admin_url text, started_at timestamptz NOT NULL, seen_at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS hecate_cluster_plugin_status (
  node_id text NOT NULL, plugin text NOT NULL, status text NOT NULL, version text, error text,
  updated_at timestamptz NOT NULL, PRIMARY KEY (node_id, plugin));
CREATE TABLE IF NOT EXISTS hecate_cluster_settings_key (
  id int PRIMARY KEY CHECK (id = 1), key bytea NOT NULL CHECK (length(key) = 32));`;
/** Serialises the schema creation of nodes starting together (CREATE TABLE IF NOT EXISTS races otherwise). */
const SCHEMA_LOCK = 0x6865_6361; // "heca"
const HEARTBEAT_MS = 15_000;
/**
 * Held shared by an install / upgrade from storing its bytes until its event is appended, exclusively by a prune pass:
 * a pass never deletes bytes whose event is about to land (package-prune.ts).
 */
const PACKAGE_LOCK = 0x6865_6370; // "hecp"

export class ClusterNode implements LifecycleCluster {
  private readonly pool: pg.Pool;
  private heartbeat: NodeJS.Timeout | undefined;

  /** Connects lazily: nothing is opened before the first query (`ensureSchema`). */
  constructor(
    readonly nodeId: string,
    url: string,
  ) {
    this.pool = new pg.Pool({ connectionString: url, max: 4, connectionTimeoutMillis: 5000 });
    this.pool.on("error", () => {}); // an idle client's connection dropped: the next query reconnects
  }

  /** Creates the cluster tables (idempotent, serialised between nodes starting together). */
  async ensureSchema(): Promise<void> {
    await this.tx(async (c) => {
      await c.query("SELECT pg_advisory_xact_lock($1)", [SCHEMA_LOCK]);
      await c.query(SCHEMA);
    });
  }

  async register(urls: { url: string; adminUrl: string }): Promise<void> {
    await this.pool.query(
      `INSERT INTO hecate_cluster_nodes (node_id, url, admin_url, started_at, seen_at) VALUES ($1, $2, $3, now(), now())
       ON CONFLICT (node_id) DO UPDATE SET url = $2, admin_url = $3, started_at = now(), seen_at = now()`,
      [this.nodeId, urls.url, urls.adminUrl],
    );
    this.heartbeat = setInterval(() => {
      this.pool
        .query("UPDATE hecate_cluster_nodes SET seen_at = now() WHERE node_id = $1", [this.nodeId])
        .catch(() => {}); // PostgreSQL away for a while: the next beat tells
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /**
   * The cluster's key for secret settings (32 bytes), made by the first node that asks (seeded with `local`, the key
   * file of a node that ran alone before, when given). Every node encrypts and decrypts with it.
   */
  async settingsKey(local: Buffer | undefined): Promise<Buffer> {
    await this.pool.query(
      "INSERT INTO hecate_cluster_settings_key (id, key) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
      [local ?? randomBytes(32)],
    );
    const r = await this.pool.query<{ key: Buffer }>("SELECT key FROM hecate_cluster_settings_key WHERE id = 1");
    return r.rows[0].key;
  }

  async storePackage(file: string): Promise<string> {
    const bytes = await readFile(file);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    await this.pool.query(
      `INSERT INTO hecate_cluster_packages (sha256, bytes, size, stored_by) VALUES ($1, $2, $3, $4)
       ON CONFLICT (sha256) DO UPDATE SET stored_by = $4, stored_at = now()`,
      [sha256, bytes, bytes.length, this.nodeId],
    );
    return sha256;
  }

  /** Runs `fn` (store a package's bytes, append the event naming them) under the shared package lock. */
  async withPackageLock<T>(fn: () => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    let broken = false;
    try {
      await c.query("SELECT pg_advisory_lock_shared($1)", [PACKAGE_LOCK]);
      try {
        return await fn();
      } finally {
        // a session lock left on a pooled connection would block every later prune: drop the connection instead
        await c.query("SELECT pg_advisory_unlock_shared($1)", [PACKAGE_LOCK]).catch(() => {
          broken = true;
        });
      }
    } catch (err) {
      broken ||= isPostgresUnreachable(err);
      throw err;
    } finally {
      c.release(broken);
    }
  }

  /** Runs `fn` holding the package lock exclusively; undefined (not run) while an install holds it. */
  async withExclusivePackageLock<T>(fn: () => Promise<T>): Promise<T | undefined> {
    let out: T | undefined;
    await this.tx(async (c) => {
      const r = await c.query<{ ok: boolean }>("SELECT pg_try_advisory_xact_lock($1) AS ok", [PACKAGE_LOCK]);
      if (r.rows[0]?.ok) out = await fn();
    });
    return out;
  }

  /** The package table without its bytes (for pruning). */
  async packages(): Promise<{ sha256: string; size: number; storedAt: Date }[]> {
    const r = await this.pool.query<{ sha256: string; size: string; stored_at: Date }>(
      "SELECT sha256, size, stored_at FROM hecate_cluster_packages ORDER BY stored_at",
    );
    return r.rows.map((row) => ({ sha256: row.sha256, size: Number(row.size), storedAt: row.stored_at }));
  }

  /**
   * Deletes these packages unless one was stored (again) within the last `graceMs`: checked in the DELETE itself,
   * so an install that stores the bytes of a package being pruned keeps them (storePackage refreshes stored_at).
   */
  async deletePackages(sha256s: string[], graceMs: number): Promise<string[]> {
    if (sha256s.length === 0) return [];
    const r = await this.pool.query<{ sha256: string }>(
      `DELETE FROM hecate_cluster_packages
       WHERE sha256 = ANY($1) AND stored_at < now() - make_interval(secs => $2::double precision / 1000)
       RETURNING sha256`,
      [sha256s, graceMs],
    );
    return r.rows.map((row) => row.sha256);
  }

  async fetchPackage(sha256: string, dest: string): Promise<void> {
    const r = await this.pool.query<{ bytes: Buffer }>("SELECT bytes FROM hecate_cluster_packages WHERE sha256 = $1", [
      sha256,
    ]);
    const bytes = r.rows[0]?.bytes;
    if (!bytes) throw codeError("package_missing", `package ${sha256} is not in the cluster's package table`);
    const got = createHash("sha256").update(bytes).digest("hex");
    if (got !== sha256) throw codeError("digest_mismatch", `package ${sha256}: the stored bytes hash to ${got}`);
    const tmp = `${dest}.fetch-${randomBytes(4).toString("hex")}`;
    try {
      await writeFile(tmp, bytes, { mode: 0o600 });
      await rename(tmp, dest);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async recordStatus(
    plugin: string,
    status: NodePluginStatus,
    extra: { version?: string | null; error?: string | null } = {},
  ): Promise<void> {
    await this.pool.query(
      `INSERT INTO hecate_cluster_plugin_status (node_id, plugin, status, version, error, updated_at)
       VALUES ($1, $2, $3, $4, $5, now())
       ON CONFLICT (node_id, plugin) DO UPDATE SET status = $3, version = $4, error = $5, updated_at = now()`,
      [this.nodeId, plugin, status, extra.version ?? null, extra.error ?? null],
    );
  }

  /**
   * This node's runtime fault of a plugin (a crash it restarted, a disable, a quarantine): sets status and error and
   * keeps the version the row has (the faulty one).
   */
  async recordFault(plugin: string, status: NodePluginStatus, error: string): Promise<void> {
    await this.pool.query(
      `INSERT INTO hecate_cluster_plugin_status (node_id, plugin, status, version, error, updated_at)
       VALUES ($1, $2, $3, NULL, $4, now())
       ON CONFLICT (node_id, plugin) DO UPDATE SET status = $3, error = $4, updated_at = now()`,
      [this.nodeId, plugin, status, error],
    );
  }

  /** Every node's status of every plugin, by plugin name (nodes in id order). */
  async pluginStatuses(): Promise<Map<string, NodeStatusRecord[]>> {
    const r = await this.pool.query<{
      node_id: string;
      plugin: string;
      status: NodePluginStatus;
      version: string | null;
      error: string | null;
      updated_at: Date;
    }>("SELECT node_id, plugin, status, version, error, updated_at FROM hecate_cluster_plugin_status ORDER BY node_id");
    const out = new Map<string, NodeStatusRecord[]>();
    for (const row of r.rows) {
      const list = out.get(row.plugin) ?? [];
      list.push({
        node: row.node_id,
        status: row.status,
        version: row.version,
        error: row.error,
        updatedAt: row.updated_at.toISOString(),
      });
      out.set(row.plugin, list);
    }
    return out;
  }

  async nodes(): Promise<ClusterNodeInfo[]> {
    const r = await this.pool.query<{
      node_id: string;
      url: string | null;
      admin_url: string | null;
      started_at: Date;
      seen_at: Date;
    }>("SELECT node_id, url, admin_url, started_at, seen_at FROM hecate_cluster_nodes ORDER BY node_id");
    return r.rows.map((n) => ({
      node: n.node_id,
      url: n.url,
      adminUrl: n.admin_url,
      startedAt: n.started_at.toISOString(),
      seenAt: n.seen_at.toISOString(),
    }));
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.pool.end();
  }

  private async tx(fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
    const c = await this.pool.connect();
    try {
      await c.query("BEGIN");
      await fn(c);
      await c.query("COMMIT");
    } catch (err) {
      await c.query("ROLLBACK").catch(() => {});
      throw err;
    } finally {
      c.release();
    }
  }
}

function codeError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}
