/**
 * Cluster-singleton jobs (scheduler.ts `singleton: true`): one lease per (plugin, job) in the cluster's PostgreSQL,
 * table `hecate_job_leases`. A node runs the job only while it holds the lease; the holder renews it every third of
 * `leaseMs` while it lives and deletes it when the job stops (unload, upgrade, shutdown); a holder killed outright
 * leaves it to expire, and the first other node to tick after that takes it.
 *
 * Clocks: expiries are PostgreSQL's `now()` (one clock for every node). The holder counts its lease valid until
 * `leaseMs` after it SENT the renewal, which is never later than the expiry the server recorded (set when the server
 * ran it), so a holder stops believing in its lease before any other node can take it.
 *
 * node-postgres directly, in a small pool of its own: the store's pool is internal to @hecate/store, and a lease is a
 * plain row with no event semantics. Loaded only in cluster mode (`pg` is never imported otherwise).
 */
import { randomUUID } from "node:crypto";
import type pg from "pg";

const SCHEMA = `CREATE TABLE IF NOT EXISTS hecate_job_leases (
  plugin text NOT NULL, job text NOT NULL, holder text NOT NULL, expires_at timestamptz NOT NULL,
  PRIMARY KEY (plugin, job))`;

/** Takes a free or expired lease, or renews our own; returns a row only when we hold it afterwards. */
const TAKE = `INSERT INTO hecate_job_leases (plugin, job, holder, expires_at)
  VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')
  ON CONFLICT (plugin, job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
  WHERE hecate_job_leases.holder = excluded.holder OR hecate_job_leases.expires_at < now()
  RETURNING holder`;

export interface LeaseOptions {
  url: string;
  nodeId: string;
  plugin: string;
  job: string;
  leaseMs: number;
  /** Told when a held lease is lost (a renewal found another holder, or could not be made in time). */
  onLost?: () => void;
}

/** One pool per plugin (per URL), shared by its leases and ended with the last of them. */
const pools = new Map<string, { pool: Promise<pg.Pool>; refs: number }>();

function acquirePool(url: string): Promise<pg.Pool> {
  let entry = pools.get(url);
  if (!entry) {
    const pool = (async () => {
      const { default: pgModule } = await import("pg");
      const p = new pgModule.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 5000 });
      p.on("error", () => {}); // an idle connection dropped (server restart): the next query opens a new one
      return p;
    })();
    pool.catch(() => {}); // reported by whoever awaits it
    entry = { pool, refs: 0 };
    pools.set(url, entry);
  }
  entry.refs++;
  return entry.pool;
}

async function releasePool(url: string): Promise<void> {
  const entry = pools.get(url);
  if (!entry || --entry.refs > 0) return;
  pools.delete(url);
  await entry.pool.then((p) => p.end()).catch(() => {});
}

/**
 * Schema creation, serialised between nodes starting together (CREATE TABLE IF NOT EXISTS races otherwise): one
 * simple query of two statements runs as one implicit transaction, which holds the advisory lock to its end.
 */
async function ensureSchema(pool: pg.Pool): Promise<void> {
  await pool.query(`SELECT pg_advisory_xact_lock(hashtext('hecate_job_leases')); ${SCHEMA}`);
}

export class JobLease {
  /** `{nodeId}/{random}`: a new one per job instance, so an upgraded plugin's new instance is another holder. */
  readonly holder: string;
  private readonly pool: Promise<pg.Pool>;
  private schema: Promise<void> | undefined;
  /** performance.now() until which we hold the lease by our own reckoning; 0 when not held. */
  private validUntil = 0;
  private renewTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** The acquire / renewal in flight (release waits for it, so it cannot leave a row behind). */
  private pending: Promise<boolean> | undefined;

  constructor(private readonly o: LeaseOptions) {
    this.holder = `${o.nodeId}/${randomUUID().slice(0, 8)}`;
    this.pool = acquirePool(o.url);
  }

  /** True while this instance holds the lease (by its own clock, see the file comment). */
  held(): boolean {
    return this.validUntil > performance.now();
  }

  /** Holds the lease afterwards (taken or renewed) or not; rejects when PostgreSQL cannot be asked. */
  acquire(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    const p = this.take();
    this.pending = p;
    return p;
  }

  private async take(): Promise<boolean> {
    const pool = await this.pool;
    this.schema ??= ensureSchema(pool).catch((err) => {
      this.schema = undefined;
      throw err;
    });
    await this.schema;
    const sentAt = performance.now();
    const r = await pool.query(TAKE, [this.o.plugin, this.o.job, this.holder, this.o.leaseMs]);
    const wasHeld = this.held();
    if (r.rowCount === 1) {
      this.validUntil = sentAt + this.o.leaseMs;
      this.scheduleRenewal();
      return true;
    }
    this.validUntil = 0;
    if (wasHeld) this.o.onLost?.();
    return false;
  }

  private scheduleRenewal(): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => {
      this.acquire().catch(() => {
        // PostgreSQL away: keep trying until our own validity runs out, then we no longer hold it.
        if (this.held()) this.scheduleRenewal();
        else this.o.onLost?.();
      });
    }, this.o.leaseMs / 3);
    this.renewTimer.unref();
  }

  /** Gives the lease up (another node may take it at its next tick) and closes the pool with the last lease. */
  async release(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.renewTimer);
    await this.pending?.catch(() => {});
    clearTimeout(this.renewTimer); // set again by an acquire that was in flight
    const wasHeld = this.validUntil > 0;
    this.validUntil = 0;
    try {
      if (wasHeld)
        await (await this.pool)
          .query("DELETE FROM hecate_job_leases WHERE plugin = $1 AND job = $2 AND holder = $3", [
            this.o.plugin,
            this.o.job,
            this.holder,
          ])
          .catch(() => {}); // unreachable: the lease expires on its own
    } finally {
      await releasePool(this.o.url);
    }
  }
}
