/** Answers written on the raw socket: to an upgrade request (no ServerResponse exists for upgrades), to a malformed request. */
import type { Duplex } from "node:stream";

/** A bodiless refusal: the SDK's, shared with every host side of the ws protocol. */
export { rejectUpgrade } from "@hecate/sdk/runtime/ws-connections";

/** A JSON error answer. */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, code: string, message: string): void {
  writeJsonError(socket, status, reason, code, message);
}

/**
 * A JSON error answer written on a raw socket (no ServerResponse: an upgrade, or a request node:http could not
 * parse), then the connection is closed. `headers` are added (e.g. the admin listener's anti-framing headers).
 */
export function writeJsonError(
  socket: Duplex,
  status: number,
  reason: string,
  code: string,
  message: string,
  headers: Readonly<Record<string, string>> = {},
): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code, message } });
  let head = `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`;
  socket.end(`${head}\r\n${body}`);
}
