/**
 * Server-sent event streams (the admin API's lifecycle events, the app shell's plugin list): the stream's head, a
 * comment now and then so that proxies do not cut an idle stream, and the set of open streams kept current.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

const PING_MS = 15_000;

/**
 * Starts an event stream on `res` and adds it to `streams` until it closes; false for HEAD, which gets the stream's
 * head and ends (nothing to follow).
 */
export function openEventStream(req: IncomingMessage, res: ServerResponse, streams: Set<ServerResponse>): boolean {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-store",
    connection: "keep-alive",
  });
  if (req.method === "HEAD") {
    res.end();
    return false;
  }
  res.write(": connected\n\n");
  streams.add(res);
  const ping = setInterval(() => res.write(": ping\n\n"), PING_MS);
  ping.unref();
  const done = () => {
    clearInterval(ping);
    streams.delete(res);
  };
  res.on("close", done);
  req.on("close", done);
  return true;
}
