/**
 * Author-facing WebSocket helper: endpoints, topics and broadcast.
 *
 *   export const routes = () => [ws.endpoint("/live", { onOpen(c) { ws.subscribe(c, "tasks"); } })];
 *   await ws.broadcast("tasks", JSON.stringify(event));
 *
 * The main thread owns the sockets; the connection's `send` resolves once the frame was handed to the socket, so a
 * slow client shows up here as sends still pending. `broadcast` skips (and counts) connections with more than
 * `maxPending` unfinished sends instead of buffering without bound. One plugin per worker, so module state here is
 * per plugin. Connections are closed cleanly (1001) by the host at unload; `closeAll` is for the plugin itself.
 */
import type { WsConnection, WsHandlers, WsRouteDefinition } from "./contract.js";

interface Tracked {
  conn: WsConnection;
  topics: Set<string>;
  pending: number;
}

const connections = new Map<WsConnection, Tracked>();
const topics = new Map<string, Set<Tracked>>();

export interface EndpointOptions {
  /** Origins allowed besides the daemon's own host, or "*" (see WsRouteDefinition.allowedOrigins). */
  allowedOrigins?: string[] | "*";
  /** Largest client message in bytes (see WsRouteDefinition.maxPayload), default 1 MiB. */
  maxPayload?: number;
}

/** A ws route (path relative to `/plugin/{name}/api`) whose connections are tracked for topics and broadcast. */
export function endpoint(path: string, handlers: WsHandlers = {}, options: EndpointOptions = {}): WsRouteDefinition {
  const def: WsRouteDefinition = {
    kind: "ws",
    path,
    handlers: {
      async onOpen(conn, req) {
        const ok = handlers.onOpen ? await handlers.onOpen(conn, req) : true;
        if (ok !== false) track(conn);
        return ok;
      },
      onMessage: handlers.onMessage?.bind(handlers),
      async onClose(conn, code, reason) {
        untrack(conn);
        await handlers.onClose?.(conn, code, reason);
      },
    },
  };
  if (options.allowedOrigins) def.allowedOrigins = options.allowedOrigins;
  if (options.maxPayload !== undefined) def.maxPayload = options.maxPayload;
  return def;
}

function track(conn: WsConnection): Tracked {
  let t = connections.get(conn);
  if (!t) {
    t = { conn, topics: new Set(), pending: 0 };
    connections.set(conn, t);
  }
  return t;
}

function untrack(conn: WsConnection): void {
  const t = connections.get(conn);
  if (!t) return;
  for (const topic of t.topics) topics.get(topic)?.delete(t);
  for (const topic of t.topics) if (topics.get(topic)?.size === 0) topics.delete(topic);
  connections.delete(conn);
}

export function subscribe(conn: WsConnection, topic: string): void {
  const t = track(conn);
  t.topics.add(topic);
  let set = topics.get(topic);
  if (!set) {
    set = new Set();
    topics.set(topic, set);
  }
  set.add(t);
}

export function unsubscribe(conn: WsConnection, topic: string): void {
  const t = connections.get(conn);
  if (!t) return;
  t.topics.delete(topic);
  const set = topics.get(topic);
  set?.delete(t);
  if (set?.size === 0) topics.delete(topic);
}

/** Connections currently subscribed to a topic. */
export function subscribers(topic: string): number {
  return topics.get(topic)?.size ?? 0;
}

/** Every open tracked connection. */
export function connectionCount(): number {
  return connections.size;
}

export interface BroadcastResult {
  sent: number;
  /** Connections skipped because they had `maxPending` sends not yet written (slow consumers). */
  skipped: number;
  failed: number;
}

/** Sends to every subscriber of `topic`; resolves once every frame was handed to its socket (or failed). */
export async function broadcast(
  topic: string,
  data: string | Uint8Array,
  options: { maxPending?: number } = {},
): Promise<BroadcastResult> {
  const maxPending = options.maxPending ?? 64;
  const result: BroadcastResult = { sent: 0, skipped: 0, failed: 0 };
  const sends: Promise<void>[] = [];
  for (const t of topics.get(topic) ?? []) {
    if (t.pending >= maxPending) {
      result.skipped++;
      continue;
    }
    t.pending++;
    sends.push(
      t.conn.send(data).then(
        () => {
          t.pending--;
          result.sent++;
        },
        () => {
          t.pending--;
          result.failed++;
        },
      ),
    );
  }
  await Promise.all(sends);
  return result;
}

/** Closes every tracked connection (e.g. from the plugin's `terminate()`). */
export function closeAll(code = 1001, reason = "closing"): void {
  for (const t of [...connections.values()]) {
    t.conn.close(code, reason);
    untrack(t.conn);
  }
}
