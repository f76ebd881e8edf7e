/**
 * `ws` servers by message limit, for hosts whose routes each set their own `maxPayload` (ws reads the limit from
 * its server's options, so one server serves every route with the same limit). Used by the daemon's worker host and
 * by the SDK's container entry.
 */
import { WebSocketServer } from "ws";

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
        wss = new WebSocketServer({ noServer: true, maxPayload });
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
