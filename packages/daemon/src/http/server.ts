/** The daemon's HTTP server: node:http wired to the router (requests and ws upgrades). */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Router } from "./router.js";

export interface HttpServerOptions {
  /** Keep idle keep-alive connections this long (ms), default 65 s (longer than typical proxy timeouts). */
  keepAliveTimeoutMs?: number;
  /** Whole-request timeout (ms), default 5 min; 0 disables. */
  requestTimeoutMs?: number;
}

export function createHttpServer(router: Router, options: HttpServerOptions = {}): Server {
  const server = createServer(
    {
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 65_000,
      requestTimeout: options.requestTimeoutMs ?? 300_000,
    },
    (req, res) => router.handle(req, res),
  );
  server.on("upgrade", (req, socket, head) => router.handleUpgrade(req, socket, head));
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  return server;
}

/** Listens and resolves with the bound port (use port 0 in tests). */
export async function listen(server: Server, port = 0, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
