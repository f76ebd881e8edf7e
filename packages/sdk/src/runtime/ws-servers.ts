/**
 * `ws` servers by message limit, for hosts whose routes each set their own `maxPayload` (ws reads the limit from
 * its server's options, so one server serves every route with the same limit). Used by the daemon's worker host and
 * by the SDK's container entry.
 */
import { createRequire } from "node:module";
import type { WebSocketServer } from "ws";

/**
 * `ws` is loaded with the first server, not with this module: every plugin host imports this module at start, and
 * loading `ws` there cost more CPU than the rest of the host's own modules together, for hosts that may never see
 * a WebSocket. (Synchronous require: `forLimit` is called in the middle of an upgrade.)
 */
let wsServerClass: typeof WebSocketServer | undefined;
function serverClass(): typeof WebSocketServer {
  wsServerClass ??= (createRequire(import.meta.url)("ws") as typeof import("ws")).WebSocketServer;
  return wsServerClass;
}

export interface WsServers {
  /** The server for this limit (bytes), created on first use. */
  forLimit(maxPayload: number): WebSocketServer;
  close(): void;
}

export function wsServersByLimit(): WsServers {
  const byLimit = new Map<number, WebSocketServer>();
  return {
    forLimit(maxPayload) {
      let wss = byLimit.get(maxPayload);
      if (!wss) {
        wss = new (serverClass())({ noServer: true, maxPayload });
        byLimit.set(maxPayload, wss);
      }
      return wss;
    },
    close() {
      for (const wss of byLimit.values()) wss.close();
      byLimit.clear();
    },
  };
}
