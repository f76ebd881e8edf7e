/**
 * Connection caps of the plugin listener: global and per client (remote address) for TCP connections, and the same
 * two for WebSockets (upgrades). The global cap never exceeds the process's file-descriptor limit minus a reserve,
 * so a flood of plugin connections cannot take the descriptors the admin socket, the admin port, plugin stores and
 * container proxy connections need. A connection over a cap is closed at once (no reply: nothing is read from it);
 * an upgrade over a WebSocket cap gets a 503.
 */
import { readFileSync } from "node:fs";
import type { Server } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { refuseUpgrade } from "./upgrade-reply.js";

export interface ConnectionLimits {
  /** Concurrent TCP connections on the plugin listener, all clients; clamped to `fd limit - reservedFds`. */
  maxConnections: number;
  /** Concurrent TCP connections per remote address (behind a reverse proxy all clients share one: raise it). */
  maxConnectionsPerClient: number;
  /** Concurrent WebSockets (and container upgrade tunnels), all clients. */
  maxWebSockets: number;
  maxWebSocketsPerClient: number;
  /** File descriptors kept out of reach of the plugin listener. */
  reservedFds: number;
}

/** RLIMIT_NOFILE's soft limit (what accept() runs into), from /proc/self/limits; Infinity when unlimited/unknown. */
export function openFileLimit(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    try {
      text = readFileSync("/proc/self/limits", "utf8");
    } catch {
      return Number.POSITIVE_INFINITY;
    }
  }
  const m = /^Max open files\s+(\S+)/m.exec(text);
  const n = m ? Number(m[1]) : Number.NaN;
  return Number.isFinite(n) && n > 0 ? n : Number.POSITIVE_INFINITY;
}

/**
 * The effective limits: defaults sized from the fd limit (for 20,000 fds: 5,000 reserved, 15,000 connections of
 * which 7,500 may be WebSockets; per client 1,024 connections and 256 WebSockets), explicit values clamped to what the
 * fd limit allows. Throws on a non-integer value, a cap below 1 or a negative reserve.
 */
export function resolveLimits(given: Partial<ConnectionLimits> = {}, fdLimit = openFileLimit()): ConnectionLimits {
  for (const [k, v] of Object.entries(given))
    if (v !== undefined && (!Number.isInteger(v) || v < (k === "reservedFds" ? 0 : 1)))
      throw new Error(
        `connection limit ${k} must be an integer >= ${k === "reservedFds" ? 0 : 1}, got ${JSON.stringify(v)}`,
      );
  const finiteLimit = Number.isFinite(fdLimit) ? fdLimit : 1_048_576;
  const reservedFds = given.reservedFds ?? Math.max(512, Math.floor(finiteLimit / 4));
  const ceiling = Math.max(finiteLimit - reservedFds, 1);
  const maxConnections = Math.min(given.maxConnections ?? ceiling, ceiling);
  return {
    reservedFds,
    maxConnections,
    maxConnectionsPerClient: given.maxConnectionsPerClient ?? 1024,
    maxWebSockets: Math.min(given.maxWebSockets ?? Math.floor(maxConnections / 2), maxConnections),
    maxWebSocketsPerClient: given.maxWebSocketsPerClient ?? 256,
  };
}

/** Counts per key; a key whose count drops to 0 is removed (the map stays as small as the live set). */
class Counter {
  private readonly counts = new Map<string, number>();
  total = 0;

  get(key: string): number {
    return this.counts.get(key) ?? 0;
  }

  add(key: string): void {
    this.counts.set(key, this.get(key) + 1);
    this.total++;
  }

  remove(key: string): void {
    const n = this.get(key) - 1;
    if (n > 0) this.counts.set(key, n);
    else this.counts.delete(key);
    this.total--;
  }
}

export interface LimitStats {
  connections: number;
  webSockets: number;
  refusedConnections: number;
  refusedWebSockets: number;
}

/** Applies `limits` to a listening HTTP server; call before `listen`. */
export class ConnectionGate {
  private readonly conns = new Counter();
  private readonly ws = new Counter();
  private refusedConnections = 0;
  private refusedWebSockets = 0;

  constructor(readonly limits: ConnectionLimits) {}

  attach(server: Server): void {
    // Over the global cap Node closes the accepted handle itself, before any JS object is made for it.
    server.maxConnections = this.limits.maxConnections;
    server.on("drop", () => this.refusedConnections++);
    server.on("connection", (socket: Socket) => this.admit(socket));
  }

  /** For the `upgrade` listener: false (and a 503 written) when the WebSocket caps are reached. */
  admitUpgrade(socket: Duplex & { remoteAddress?: string }): boolean {
    const key = socket.remoteAddress;
    if (
      key === undefined ||
      this.ws.total >= this.limits.maxWebSockets ||
      this.ws.get(key) >= this.limits.maxWebSocketsPerClient
    ) {
      this.refusedWebSockets++;
      refuseUpgrade(socket, 503, "Service Unavailable", "too_many_websockets", "too many WebSockets, retry later");
      return false;
    }
    this.ws.add(key);
    socket.once("close", () => this.ws.remove(key));
    return true;
  }

  stats(): LimitStats {
    return {
      connections: this.conns.total,
      webSockets: this.ws.total,
      refusedConnections: this.refusedConnections,
      refusedWebSockets: this.refusedWebSockets,
    };
  }

  private admit(socket: Socket): void {
    const key = socket.remoteAddress;
    // The global cap again: `maxConnections` only applies to connections the server accepted itself, not to those a
    // plugin host receives from the supervisor (emitted as `connection`).
    if (
      key === undefined ||
      this.conns.total >= this.limits.maxConnections ||
      this.conns.get(key) >= this.limits.maxConnectionsPerClient
    ) {
      this.refusedConnections++;
      socket.destroy();
      return;
    }
    this.conns.add(key);
    socket.once("close", () => this.conns.remove(key));
  }
}
