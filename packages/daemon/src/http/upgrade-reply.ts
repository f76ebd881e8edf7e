/** Answers to an upgrade request, written on the raw socket (no ServerResponse exists for upgrades). */
import type { Duplex } from "node:stream";

/** A bodiless refusal: the SDK's, shared with every host side of the ws protocol. */
export { rejectUpgrade } from "@hecate/sdk/runtime/ws-connections";

/** A JSON error answer. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, code: string, message: string): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
