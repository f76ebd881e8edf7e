/**
 * Connection draining for a host being recycled (see the `retire` request): new connections go to the new host, so
 * this one only has to let its own clients go without failing a request. HTTP/1.1 gives the server no safe moment
 * to close a keep-alive connection on which a client may be sending (the request would be lost in flight), so:
 * - every response not yet started says `Connection: close`: node:http closes the connection once it is sent, and
 *   the client opens its next one, which the supervisor hands to the new host;
 * - a connection idle for `idleGraceMs` (a client that sent nothing since the recycle began) is ended: the same
 *   race as any keep-alive timeout, for clients that are idle anyway;
 * - upgraded connections (WebSockets) are not counted: the plugins' unload closes them with 1001 (going away).
 */
import type { Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";

type HttpSocket = Socket & { _httpMessage?: ServerResponse | null };

export class ConnectionDrain {
  private readonly sockets = new Set<HttpSocket>();
  private draining = false;

  constructor(private readonly server: Server) {
    server.on("connection", (s: HttpSocket) => {
      this.sockets.add(s);
      s.once("close", () => this.sockets.delete(s));
    });
    server.on("upgrade", (req) => this.sockets.delete(req.socket as HttpSocket));
  }

  /** Resolves once every HTTP connection is closed (true) or `deadlineMs` passed (false). */
  async drain(deadlineMs: number, idleGraceMs: number): Promise<boolean> {
    if (!this.draining) {
      this.draining = true;
      // Only now on the request path: a host that is not draining pays nothing per request.
      this.server.prependListener("request", (_req, res: ServerResponse) => res.setHeader("connection", "close"));
    }
    const until = Date.now() + deadlineMs;
    const idleSince = new Map<HttpSocket, number>();
    while (this.sockets.size > 0 && Date.now() < until) {
      const now = Date.now();
      for (const s of this.sockets) {
        const res = s._httpMessage; // node's response in progress on this connection (none: idle)
        if (res) {
          idleSince.delete(s);
          if (!res.headersSent) res.setHeader("connection", "close");
          continue;
        }
        const since = idleSince.get(s) ?? now;
        idleSince.set(s, since);
        if (now - since >= idleGraceMs) s.end();
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return this.sockets.size === 0;
  }
}
