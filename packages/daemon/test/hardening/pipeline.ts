/**
 * A raw pipelining HTTP/1.1 client for the reply-framing tests: writes every request at once on one socket, reads
 * what comes back, and splits it into replies the way a client would (Content-Length, chunked, HEAD/204/304 without
 * a body). Hand-written on purpose: node's own client never pipelines, and the point is to see the bytes.
 */
import { connect } from "node:net";

export interface PipedReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface PipelineResult {
  raw: Buffer;
  /**
   * The server closed the connection (rather than us: 100 ms after the last expected reply was complete, or after
   * `quietMs` of silence).
   */
  closedByServer: boolean;
  /** The replies complete in `raw`, in order. */
  replies: PipedReply[];
  /** Bytes after the last complete reply. */
  rest: Buffer;
}

export interface PipedRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
}

export function pipeline(port: number, requests: PipedRequest[], quietMs = 1500): Promise<PipelineResult> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    let closedByServer = false;
    let weClosed = false;
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    const quiet = () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        weClosed = true;
        socket.destroy();
      }, quietMs);
    };
    socket.on("data", (c: Buffer) => {
      chunks.push(c);
      // Every reply complete: no need to wait for silence (a close that follows would still be seen as ours).
      const got = parseReplies(Buffer.concat(chunks), requests);
      if (got.replies.length === requests.length && got.rest.length === 0) {
        clearTimeout(timer);
        timer = setTimeout(() => {
          weClosed = true;
          socket.destroy();
        }, 100);
      } else quiet();
    });
    socket.on("close", () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      closedByServer = !weClosed;
      const raw = Buffer.concat(chunks);
      resolve({ raw, closedByServer, ...parseReplies(raw, requests) });
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "ECONNRESET") reject(err); // a reset is the server closing: "close" follows
    });
    socket.on("connect", () => {
      const head = (r: PipedRequest) =>
        `${r.method} ${r.path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n${Object.entries(r.headers ?? {})
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("")}\r\n`;
      socket.write(requests.map(head).join(""));
      quiet();
    });
  });
}

function parseReplies(raw: Buffer, requests: PipedRequest[]): { replies: PipedReply[]; rest: Buffer } {
  const replies: PipedReply[] = [];
  let at = 0;
  for (const req of requests) {
    const end = raw.indexOf("\r\n\r\n", at);
    if (end < 0) break;
    const lines = raw.subarray(at, end).toString("latin1").split("\r\n");
    const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(lines[0])?.[1]);
    if (!status) break;
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(":");
      const k = l.slice(0, i).toLowerCase();
      headers[k] = headers[k] === undefined ? l.slice(i + 1).trim() : `${headers[k]}, ${l.slice(i + 1).trim()}`;
    }
    let pos = end + 4;
    let body: Buffer;
    if (req.method === "HEAD" || status === 204 || status === 304) body = Buffer.alloc(0);
    else if (headers["transfer-encoding"] === "chunked") {
      const parts: Buffer[] = [];
      for (;;) {
        const eol = raw.indexOf("\r\n", pos);
        if (eol < 0) return { replies, rest: raw.subarray(at) };
        const size = Number.parseInt(raw.subarray(pos, eol).toString("latin1"), 16);
        if (raw.length < eol + 2 + size + 2) return { replies, rest: raw.subarray(at) };
        parts.push(raw.subarray(eol + 2, eol + 2 + size));
        pos = eol + 2 + size + 2;
        if (size === 0) break;
      }
      body = Buffer.concat(parts);
    } else {
      const len = Number(headers["content-length"] ?? 0);
      if (raw.length < pos + len) break;
      body = raw.subarray(pos, pos + len);
      pos += len;
    }
    replies.push({ status, headers, body });
    at = pos;
  }
  return { replies, rest: raw.subarray(at) };
}
