/** A raw TCP client for the daemon's port: writes bytes as given (pipelined requests), reads every byte back. */
import { connect } from "node:net";

export interface RawResult {
  data: Buffer;
  /** The daemon closed the connection (within `waitMs`). */
  closed: boolean;
}

/**
 * Sends `text` on one connection; collects what comes back until the daemon closes it, or `settleMs` after
 * `responses` complete responses have arrived (time for anything extra to show), or `waitMs` in all.
 */
export function rawExchange(
  port: number,
  text: string,
  opts: { responses?: number; settleMs?: number; waitMs?: number } = {},
): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(port, "127.0.0.1");
    let timer: NodeJS.Timeout;
    const stop = (after: number) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        s.removeAllListeners("close");
        s.destroy();
        resolve({ data: Buffer.concat(chunks), closed: false });
      }, after);
    };
    stop(opts.waitMs ?? 3000);
    s.on("data", (c) => {
      chunks.push(c);
      if (opts.responses && parseResponses(Buffer.concat(chunks)).responses.length >= opts.responses)
        stop(opts.settleMs ?? 150);
    });
    s.on("error", () => {}); // a reset after the daemon closed is still "closed"
    s.once("close", () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
    s.once("connect", () => s.write(text));
    s.once("timeout", () => reject(new Error("connect timeout")));
  });
}

export interface ParsedResponse {
  status: number;
  /** Lower-cased names; repeated headers in order. */
  headers: [string, string][];
  body: Buffer;
}

/**
 * Splits a byte stream into the complete HTTP/1.1 responses it holds (Content-Length or chunked bodies) and the
 * bytes left over (an incomplete response).
 */
export function parseResponses(data: Buffer): { responses: ParsedResponse[]; rest: Buffer } {
  const responses: ParsedResponse[] = [];
  let at = 0;
  for (;;) {
    const end = data.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = data.subarray(at, end).toString("latin1").split("\r\n");
    const status = Number(lines[0].split(" ")[1]);
    const headers = lines.slice(1).map((l): [string, string] => {
      const i = l.indexOf(":");
      return [l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim()];
    });
    const get = (n: string) => headers.find(([k]) => k === n)?.[1];
    let p = end + 4;
    let body: Buffer;
    if (get("transfer-encoding") === "chunked") {
      const parts: Buffer[] = [];
      for (;;) {
        const le = data.indexOf("\r\n", p);
        if (le < 0) return { responses, rest: data.subarray(at) };
        const size = Number.parseInt(data.subarray(p, le).toString("latin1"), 16);
        if (data.length < le + 2 + size + 2) return { responses, rest: data.subarray(at) };
        parts.push(data.subarray(le + 2, le + 2 + size));
        p = le + 2 + size + 2;
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      const len = Number(get("content-length") ?? 0);
      if (data.length < p + len) break;
      body = data.subarray(p, p + len);
      p += len;
    }
    responses.push({ status, headers, body });
    at = p;
  }
  return { responses, rest: data.subarray(at) };
}

export function header(r: ParsedResponse, name: string): string[] {
  return r.headers.filter(([k]) => k === name).map(([, v]) => v);
}
