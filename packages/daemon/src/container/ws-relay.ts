/**
 * WebSocket upgrades to a container plugin: the daemon terminates the WebSocket on both sides (a `ws` server for the
 * client, a `ws` client over the plugin's Unix socket) and relays whole messages between them.
 *
 * Why terminate rather than pipe (or parse frames on a raw tunnel): the plugin is untrusted and so is the client.
 * - The client side only becomes a WebSocket once the plugin has completed a VALID handshake (101 with the right
 *   Sec-WebSocket-Accept, a subprotocol the client offered); a refusal is re-sent as a proper HTTP response with the
 *   daemon's own framing, and anything else (bytes before the 101, a 200 with junk, a bad accept key) is a 502. Raw
 *   plugin bytes never reach the client as if upgraded.
 * - `maxPayload` is enforced by `ws` on the client's messages (after reassembling fragments: a message split into
 *   many small frames counts whole), closing with 1009 before the plugin sees any of it; the plugin's messages get
 *   the same limit. A hand-written frame parser would have to redo ws's validation (masking, control frames,
 *   fragmentation, close codes, UTF-8) to be as strict; `ws` is already a dependency and well kept.
 * Cost: each message is held whole (at most `maxPayload` bytes) in the daemon and re-framed; compression is off on
 * both hops (no inflate work or zip bombs in the daemon). Subprotocols pass through: the plugin is offered the
 * client's list and the client is answered with the plugin's choice. Pings are answered per hop.
 */
import { type IncomingMessage, STATUS_CODES } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { HOP_BY_HOP, isDaemonCookie } from "@hecate/sdk/runtime/reply-headers";
import WebSocket, { WebSocketServer } from "ws";
import { rejectUpgrade } from "../http/upgrade-reply.js";

export interface WsRelayOptions {
  plugin: string;
  /** The plugin's socket, dialled afresh for each connection. */
  socketPath: string;
  /** Largest message accepted from either side, bytes. */
  maxPayload: number;
  /** The plugin must complete (or refuse) the handshake within this. */
  handshakeTimeoutMs: number;
  /** The plugin broke the protocol (invalid handshake, frames, refusal): one line for the plugin's log. */
  onProtocolError(message: string): void;
}

/** A refusal's body is re-sent with our own Content-Length, so it is read whole: refusals are small. */
const MAX_REFUSAL_BODY = 64 * 1024;
/** Relay backpressure: stop reading a side while the other has this much unsent, resume below a quarter of it. */
const HIGH_WATER = 1024 * 1024;
/** How long a peer has to answer our close (after it broke the protocol, or at unload) before it is cut off. */
const CLOSE_GRACE_MS = 500;
/** Sent by ws itself (the handshake, the offer) or framing we own: never copied from a request or a refusal. */
const HANDSHAKE_HEADERS = new Set([
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
  "sec-websocket-accept",
  "content-length",
]);

interface Dial {
  path: string;
  headers: Record<string, string | string[]>;
  upstream?: WebSocket;
}

export class WsRelay {
  private readonly wss: WebSocketServer;
  private readonly dials = new WeakMap<IncomingMessage, Dial>();
  /** Open pairs and dials in progress (for `closeAll`). */
  private readonly live = new Set<WebSocket>();
  private closing = false;
  /** Upstreams whose client side completed the handshake. */
  private readonly pairs = new WeakSet<WebSocket>();

  constructor(private readonly opts: WsRelayOptions) {
    this.wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: opts.maxPayload,
      // Two-argument form: ws validated the client's handshake; the client is answered once the plugin has.
      verifyClient: (info: { req: IncomingMessage }, done: (ok: boolean) => void) => this.dial(info.req, done),
      handleProtocols: (_offered, req) => this.dials.get(req)?.upstream?.protocol || false,
    });
  }

  get size(): number {
    return this.live.size;
  }

  /**
   * Relays one upgrade request. `headers` is the request head for the plugin as a flat [name, value, ...] list
   * (hop-by-hop headers already removed, x-forwarded-* / Forwarded set by the proxy).
   */
  relay(req: IncomingMessage, socket: Duplex, head: Buffer, path: string, headers: string[]): void {
    const merged: Record<string, string | string[]> = {};
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i].toLowerCase();
      if (HANDSHAKE_HEADERS.has(name)) continue;
      const prev = merged[name];
      merged[name] = prev === undefined ? headers[i + 1] : [...(Array.isArray(prev) ? prev : [prev]), headers[i + 1]];
    }
    this.dials.set(req, { path, headers: merged });
    this.wss.handleUpgrade(req, socket, head, (client) => this.pair(req, client));
  }

  /** Closes every connection (1001 to clients) and refuses new ones with 503. */
  closeAll(): void {
    this.closing = true;
    this.wss.close();
    for (const ws of this.live) {
      if (ws.readyState !== WebSocket.OPEN) ws.terminate();
      else {
        ws.close(1001, "plugin unloading");
        setTimeout(() => ws.terminate(), CLOSE_GRACE_MS).unref(); // no 30 s wait on a peer that does not answer
      }
    }
    this.live.clear();
  }

  private dial(req: IncomingMessage, done: (ok: boolean) => void): void {
    const d = this.dials.get(req);
    const socket = req.socket as Duplex;
    if (!d) {
      rejectUpgrade(socket, 500, "Internal Server Error");
      return;
    }
    const offered = req.headers["sec-websocket-protocol"];
    const protocols = offered ? offered.split(",").map((p) => p.trim()) : [];
    let settled = false;
    const upstream = new WebSocket(`ws://plugin${d.path}`, protocols, {
      createConnection: () => connect(this.opts.socketPath),
      headers: d.headers,
      perMessageDeflate: false,
      maxPayload: this.opts.maxPayload,
      handshakeTimeout: this.opts.handshakeTimeoutMs,
      followRedirects: false,
    });
    this.live.add(upstream);
    const settle = () => {
      settled = true;
      socket.off("close", onClientGone);
    };
    const onClientGone = () => {
      settle();
      this.live.delete(upstream);
      upstream.terminate();
    };
    socket.once("close", onClientGone);
    upstream.once("open", () => {
      settle();
      d.upstream = upstream;
      done(true); // ws answers the client 101 (with the plugin's subprotocol) and calls `pair` synchronously
      if (!this.pairs.has(upstream)) {
        // The client went away in the meantime (ws destroyed its socket without calling back).
        this.live.delete(upstream);
        upstream.terminate();
      }
    });
    upstream.once("unexpected-response", (upReq, res) => {
      settle();
      this.forwardRefusal(socket, res, () => {
        upReq.destroy();
        this.live.delete(upstream);
      });
    });
    upstream.on("error", (err: Error & { code?: string }) => {
      this.live.delete(upstream);
      if (settled) return;
      settle();
      if (this.closing) {
        rejectUpgrade(socket, 503, "Service Unavailable"); // unloading: the dial was cut by closeAll
        return;
      }
      // A plugin that is not listening is "unavailable"; anything else it answered is a protocol error.
      if (err.code === undefined || err.code.startsWith("HPE_"))
        this.opts.onProtocolError(`invalid WebSocket handshake from the plugin: ${err.message}`);
      rejectUpgrade(socket, 502, "Bad Gateway");
    });
  }

  private pair(req: IncomingMessage, client: WebSocket): void {
    const upstream = this.dials.get(req)?.upstream;
    this.dials.delete(req);
    if (!upstream) {
      client.terminate();
      return;
    }
    this.pairs.add(upstream);
    this.live.add(client);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
    client.on("error", (err: Error & { code?: string }) => {
      // ws has already sent the client its close (1009 for a message over maxPayload); the plugin is told why. ws
      // would then read (and drop) the rest of the client's oversized message until the client answers the close,
      // and a client still sending 90 MiB answers late: it gets a moment to read the close, then is cut off.
      if (upstream.readyState === WebSocket.OPEN)
        upstream.close(err.code === "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH" ? 1009 : 1002, "client protocol error");
      setTimeout(() => client.terminate(), CLOSE_GRACE_MS).unref();
    });
    upstream.on("error", (err) => {
      this.opts.onProtocolError(`invalid WebSocket traffic from the plugin: ${err.message}`);
      if (client.readyState === WebSocket.OPEN) client.close(1011, "plugin protocol error");
    });
    client.once("close", (code, reason) => {
      this.live.delete(client);
      closeWith(upstream, code, reason);
    });
    upstream.once("close", (code, reason) => {
      this.live.delete(upstream);
      closeWith(client, code, reason);
    });
  }

  /** Messages from `from` to `to`, whole and with their type; `from` is paused while `to` has too much unsent. */
  private pipe(from: WebSocket, to: WebSocket): void {
    const resume = () => {
      if (from.isPaused && to.bufferedAmount < HIGH_WATER / 4) from.resume();
    };
    from.on("message", (data, isBinary) => {
      if (to.readyState !== WebSocket.OPEN) return;
      to.send(data as Buffer, { binary: isBinary }, resume);
      if (to.bufferedAmount > HIGH_WATER) from.pause();
    });
  }

  /** The plugin refused the upgrade: its status, end-to-end headers and body, in a response framed by us. */
  private forwardRefusal(socket: Duplex, res: IncomingMessage, done: () => void): void {
    const status = res.statusCode ?? 0;
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (why: string) => {
      if (failed) return;
      failed = true;
      res.destroy();
      done();
      this.opts.onProtocolError(`invalid answer to a WebSocket upgrade: ${why}`);
      rejectUpgrade(socket, 502, "Bad Gateway");
    };
    if (status < 200 || status > 599) {
      fail(`status ${status}`);
      return;
    }
    res.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_REFUSAL_BODY) fail(`refusal body over ${MAX_REFUSAL_BODY} bytes`);
      else chunks.push(c);
    });
    res.once("error", () => fail("refusal cut short"));
    res.once("close", () => {
      if (!res.complete) fail("refusal cut short"); // e.g. the handshake deadline passed mid-body
    });
    res.once("end", () => {
      done();
      const body = Buffer.concat(chunks);
      const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Unknown"}`];
      const raw = res.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const name = raw[i].toLowerCase();
        if (HOP_BY_HOP.has(name) || HANDSHAKE_HEADERS.has(name)) continue;
        if (name === "set-cookie" && isDaemonCookie(raw[i + 1])) continue;
        lines.push(`${raw[i]}: ${raw[i + 1]}`);
      }
      lines.push("Connection: close", `Content-Length: ${body.length}`);
      socket.end(Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), body]));
    });
  }
}

/** Passes a close on to the other side; codes that cannot be sent (1005 none, 1006 abnormal) become sendable ones. */
function closeWith(ws: WebSocket, code: number, reason: Buffer): void {
  if (ws.readyState === WebSocket.CLOSED || ws.readyState === WebSocket.CLOSING) return;
  if (code === 1005) ws.close();
  else if (code === 1006) ws.close(1001, "peer connection lost");
  else ws.close(code, reason);
}
