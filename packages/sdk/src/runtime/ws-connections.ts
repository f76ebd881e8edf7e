/**
 * The host side of the plugin protocol for WebSockets, written once (as HttpExchanges is for HTTP): it offers an
 * upgrade to the plugin (`ws-open`), completes or refuses it on the plugin's `ws-accept` / `ws-reject`, relays
 * messages both ways with flow control (inbound: a window of bytes the plugin has not acknowledged with `ws-ack`;
 * outbound: `ws-sent` once the socket took a message) and closes. Used by the daemon's worker threads, the container
 * entry and the test harness's server.
 */
import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { WebSocket, WebSocketServer } from "ws";
import type { MainToWorker, WorkerToMain } from "../protocol.js";
import { transferable } from "./http-exchanges.js";

/** The fields of a `ws-open` message the caller knows (route, path, params, headers, client address). */
export type UpgradeFields = Omit<Extract<MainToWorker, { t: "ws-open" }>, "t" | "connId">;

export interface WsConnectionsOptions {
  /** Delivers a message to the plugin's dispatcher; `transfer` lists ArrayBuffers to move (worker threads). */
  post(msg: MainToWorker, transfer?: ArrayBuffer[]): void;
  /** The `ws` server that enforces a route's message limit (ws reads it from its server's options). */
  serverFor(maxPayload: number | undefined): WebSocketServer;
  /** Binary messages are transferred to another thread (each must own its ArrayBuffer). */
  transfer: boolean;
  /** Allocates connection ids, when the dispatcher has other connections too (the harness's in-memory ones). */
  nextId?: () => number;
}

interface Conn {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  maxPayload: number | undefined;
  ws?: WebSocket;
  /** Inbound message bytes sent to the plugin and not yet acknowledged by `ws-ack`. */
  inflight: number;
}

/** Inbound messages: stop reading a client past this many unacknowledged bytes (per connection). */
const WS_WINDOW = 1024 * 1024;

/** Refuses an upgrade with a bodiless HTTP answer (nothing was sent on the socket yet). */
export function rejectUpgrade(socket: Duplex, status: number, text: string): void {
  if (socket.destroyed) return;
  socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}

/** The WebSocket connections between one plugin and the clients of one host. */
export class WsConnections {
  private lastId = 0;
  private readonly conns = new Map<number, Conn>();
  private closedAll = false;

  constructor(private readonly o: WsConnectionsOptions) {}

  get size(): number {
    return this.conns.size;
  }

  /** Offers the upgrade to the plugin, which accepts (the handshake completes) or refuses it. */
  open(req: IncomingMessage, socket: Duplex, head: Buffer, fields: UpgradeFields, maxPayload?: number): void {
    const connId = this.o.nextId?.() ?? ++this.lastId;
    this.conns.set(connId, { req, socket, head, maxPayload, inflight: 0 });
    socket.on("error", () => {});
    socket.on("close", () => {
      const c = this.conns.get(connId);
      if (c && !c.ws) {
        this.conns.delete(connId);
        this.o.post({ t: "ws-closed", connId, code: 1006, reason: "" });
      }
    });
    this.o.post({ t: "ws-open", connId, ...fields });
  }

  /** Consumes the plugin's messages about this host's WebSocket connections; false for any other. */
  handle(m: WorkerToMain): boolean {
    if (!("connId" in m) || !this.conns.has(m.connId)) return false;
    switch (m.t) {
      case "ws-accept":
        this.accept(m.connId);
        return true;
      case "ws-reject": {
        const c = this.conns.get(m.connId);
        if (c) {
          this.conns.delete(m.connId);
          rejectUpgrade(c.socket, m.status, m.status === 404 ? "Not Found" : "Forbidden");
        }
        return true;
      }
      case "ws-ack": {
        const c = this.conns.get(m.connId);
        if (!c) return true;
        c.inflight -= m.bytes;
        if (c.ws?.isPaused && c.inflight <= WS_WINDOW / 2) c.ws.resume();
        return true;
      }
      case "ws-send": {
        const { connId, seq } = m;
        const ws = this.conns.get(connId)?.ws;
        // Acknowledged even when the socket is closing, so the plugin's send() never waits forever.
        if (!ws || ws.readyState !== ws.OPEN) this.o.post({ t: "ws-sent", connId, seq });
        else ws.send(m.data, { binary: typeof m.data !== "string" }, () => this.o.post({ t: "ws-sent", connId, seq }));
        return true;
      }
      case "ws-close": {
        const c = this.conns.get(m.connId);
        if (!c) return true;
        if (c.ws) safeClose(c.ws, m.code, m.reason);
        else {
          this.conns.delete(m.connId);
          rejectUpgrade(c.socket, 403, "Forbidden");
        }
        return true;
      }
      default:
        return false;
    }
  }

  /** The plugin is gone: open connections close with `code` / `reason`, offered upgrades get 503. */
  closeAll(code: number, reason: string): void {
    this.closedAll = true;
    for (const [connId, c] of this.conns) {
      this.conns.delete(connId);
      if (c.ws) safeClose(c.ws, code, reason);
      else rejectUpgrade(c.socket, 503, "Service Unavailable");
    }
  }

  private accept(connId: number): void {
    const c = this.conns.get(connId);
    if (!c) return;
    this.o.serverFor(c.maxPayload).handleUpgrade(c.req, c.socket, c.head, (ws) => {
      c.ws = ws;
      if (this.closedAll) {
        ws.close(1011, "plugin gone");
        return;
      }
      ws.on("message", (data, isBinary) => {
        const buf = toBuffer(data);
        c.inflight += buf.byteLength;
        if (c.inflight > WS_WINDOW && !ws.isPaused) ws.pause();
        if (!isBinary) this.o.post({ t: "ws-msg", connId, data: buf.toString("utf8") });
        else if (!this.o.transfer)
          this.o.post({ t: "ws-msg", connId, data: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) });
        else {
          const payload = transferable(buf);
          this.o.post({ t: "ws-msg", connId, data: payload }, [payload.buffer as ArrayBuffer]);
        }
      });
      ws.on("close", (code, reason) => {
        if (this.conns.delete(connId)) this.o.post({ t: "ws-closed", connId, code, reason: reason.toString("utf8") });
      });
      ws.on("error", () => {});
    });
  }
}

function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    ws.terminate(); // invalid close code from the plugin
  }
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}
