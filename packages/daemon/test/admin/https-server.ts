/**
 * A real HTTPS server on 127.0.0.1 with a throwaway CA made by `openssl` (test only): serves packages, redirects,
 * stalls and errors for the URL-install tests.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { join } from "node:path";

export interface TestCa {
  /** PEM file of the CA certificate (what a client must trust). */
  caFile: string;
  key: string;
  cert: string;
}

/** A CA and a server certificate for IP 127.0.0.1 signed by it, in `dir` (EC P-256: fast). */
export function makeTestCa(dir: string): TestCa {
  const f = (n: string) => join(dir, n);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ssl("req", "-x509", ...ec, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "1", "-subj", "/CN=hecate test CA");
  ssl("req", ...ec, "-keyout", f("srv.key"), "-out", f("srv.csr"), "-subj", "/CN=127.0.0.1");
  writeFileSync(f("srv.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
  ssl(
    "x509",
    "-req",
    "-in",
    f("srv.csr"),
    "-CA",
    f("ca.pem"),
    "-CAkey",
    f("ca.key"),
    "-CAcreateserial",
    "-out",
    f("srv.pem"),
    "-days",
    "1",
    "-extfile",
    f("srv.ext"),
  );
  return { caFile: f("ca.pem"), key: readFileSync(f("srv.key"), "utf8"), cert: readFileSync(f("srv.pem"), "utf8") };
}

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;

export interface TestServer {
  url: string;
  close(): Promise<void>;
}

/** Starts an HTTPS (with `ca`) or plain HTTP server on 127.0.0.1; close() also ends stalled connections. */
export async function serve(handler: Handler, ca?: TestCa): Promise<TestServer> {
  const server: Server = ca ? createHttpsServer({ key: ca.key, cert: ca.cert }, handler) : createHttpServer(handler);
  const sockets = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${ca ? "https" : "http"}://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
