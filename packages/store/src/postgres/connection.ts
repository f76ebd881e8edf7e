/**
 * One connection pool and one LISTEN connection per PostgreSQL URL, shared by every store of this process opened on
 * that URL (a daemon with many plugin stores must not open a pool per store). Reference-counted: the last store to
 * close ends them.
 */
import pg from "pg";
import { StoreError } from "../errors.js";
import { CHANNEL, migrate, SCHEMA_VERSION } from "./schema.js";

export interface PgConnectionOptions {
  poolSize?: number;
  connectTimeoutMs?: number;
}

/** The URL as shown in errors and `location`: without its password. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "";
    return u.toString().replace(/:@/, "@");
  } catch {
    return "postgres://(unparseable url)";
  }
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2000;

export class PgConnection {
  readonly pool: pg.Pool;
  readonly location: string;
  private refs = 0;
  private schema: Promise<void> | undefined;
  private readonly listeners = new Map<string, Set<() => void>>();
  private listener: pg.Client | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private backoff = RECONNECT_MIN_MS;
  private ended = false;

  constructor(
    private readonly url: string,
    options: PgConnectionOptions,
  ) {
    this.location = redactUrl(url);
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.poolSize ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5000,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection dropped by the server (restart, admin shutdown): the pool discards it and the next query
    // opens a new one. Without a listener the 'error' event would crash the process.
    this.pool.on("error", () => {});
  }

  /** Resolves once the schema is in place; a failure (server down) is not remembered, the next call tries again. */
  ready(): Promise<void> {
    this.schema ??= (async () => {
      const client = await this.pool.connect();
      try {
        const version = await migrate(client);
        if (version > SCHEMA_VERSION)
          throw new StoreError(
            "STORE_SCHEMA_TOO_NEW",
            `event store database ${this.location} has schema ${version}, this version understands ${SCHEMA_VERSION}`,
          );
      } finally {
        client.release();
      }
    })().catch((error) => {
      this.schema = undefined;
      throw error;
    });
    return this.schema;
  }

  /**
   * Calls `onCommit` whenever another connection committed an append to `storeId`, and after every (re)connection of
   * the LISTEN connection (notifications sent while it was down are lost, so subscribers catch up by reading).
   */
  listen(storeId: string, onCommit: () => void): () => void {
    const set = this.listeners.get(storeId) ?? new Set<() => void>();
    this.listeners.set(storeId, set);
    set.add(onCommit);
    if (!this.listener && !this.reconnectTimer) void this.connectListener();
    return () => {
      set.delete(onCommit);
      if (set.size === 0) this.listeners.delete(storeId);
      if (this.listeners.size === 0) this.stopListener();
    };
  }

  private async connectListener(): Promise<void> {
    if (this.ended || this.listeners.size === 0) return;
    const client = new pg.Client({ connectionString: this.url });
    this.listener = client;
    const lost = () => {
      if (this.listener !== client) return;
      this.listener = undefined;
      client.removeAllListeners("notification");
      void client.end().catch(() => {});
      this.scheduleReconnect();
    };
    client.on("error", lost);
    client.on("end", lost);
    client.on("notification", (n) => {
      const payload = n.payload ?? "";
      const storeId = payload.slice(0, payload.lastIndexOf(":"));
      for (const fn of this.listeners.get(storeId) ?? []) fn();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
    } catch {
      lost();
      return;
    }
    if (this.listener !== client) return;
    this.backoff = RECONNECT_MIN_MS;
    for (const set of this.listeners.values()) for (const fn of set) fn();
  }

  private scheduleReconnect(): void {
    if (this.ended || this.listeners.size === 0 || this.reconnectTimer) return;
    const delay = this.backoff;
    this.backoff = Math.min(this.backoff * 2, RECONNECT_MAX_MS);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connectListener();
    }, delay);
    this.reconnectTimer.unref();
  }

  private stopListener(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const client = this.listener;
    this.listener = undefined;
    if (client) {
      client.removeAllListeners("notification");
      client.on("error", () => {});
      void client.end().catch(() => {});
    }
  }

  /** @internal */
  retain(): this {
    this.refs++;
    return this;
  }

  /** Drops one reference; the last one ends the pool and the LISTEN connection. */
  async release(): Promise<void> {
    if (--this.refs > 0) return;
    this.ended = true;
    connections.delete(this.url);
    this.stopListener();
    await this.pool.end().catch(() => {});
  }
}

const connections = new Map<string, PgConnection>();

export function acquireConnection(url: string, options: PgConnectionOptions): PgConnection {
  const c = connections.get(url) ?? new PgConnection(url, options);
  connections.set(url, c);
  return c.retain();
}
