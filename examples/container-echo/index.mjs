// @ts-check
/**
 * Example container plugin (runs in Podman on hecate's Node base image, see manifest.json). Plain ESM so the
 * package needs no build step; `@hecate/sdk` is mounted read-only into the container by the daemon.
 * Besides echo/streaming/WebSocket routes it has probes the daemon's tests use to check the sandbox.
 */
import { createHash } from "node:crypto";
import { lookup } from "node:dns/promises";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { serveContainerPlugin } from "@hecate/sdk/container";
import { HttpError } from "@hecate/sdk/contract";

/** @type {Buffer[]} */
const hoard = [];

export function manifest() {
  return JSON.parse(readFileSync(new URL("./manifest.json", import.meta.url), "utf8"));
}

export function init() {}

/** @param {string} host @param {number} port */
function tryConnect(host, port) {
  return new Promise((resolve) => {
    const s = connect({ host, port, timeout: 1500 });
    s.once("connect", () => {
      s.destroy();
      resolve("connected");
    });
    s.once("timeout", () => {
      s.destroy();
      resolve("timeout");
    });
    s.once("error", (e) => resolve(/** @type {NodeJS.ErrnoException} */ (e).code ?? e.message));
  });
}

/** @returns {import("@hecate/sdk/contract").RouteDefinition[]} */
export function routes() {
  return [
    { method: "GET", path: "/hello", handler: () => ({ hello: "from a container", uid: process.getuid?.() }) },
    {
      method: ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"],
      path: "/echo",
      handler: (req) => ({
        status: 200,
        headers: {
          "x-echo-method": req.method,
          "content-type": String(req.headers["content-type"] ?? "application/octet-stream"),
        },
        stream: req.stream(),
      }),
    },
    {
      method: "GET",
      path: "/inspect",
      handler: (req) => ({ method: req.method, path: req.path, query: req.query, headers: req.headers }),
    },
    {
      method: "POST",
      path: "/upload",
      handler: async (req) => {
        const h = createHash("sha256");
        let bytes = 0;
        for await (const c of req.stream()) {
          h.update(c);
          bytes += c.length;
        }
        return { bytes, sha256: h.digest("hex") };
      },
    },
    {
      method: "GET",
      path: "/download",
      handler: (req) => {
        const mb = Number(req.query.mb ?? 1);
        async function* gen() {
          const chunk = Buffer.alloc(1024 * 1024, 0x61);
          for (let i = 0; i < mb; i++) yield chunk;
        }
        return {
          headers: { "content-type": "application/octet-stream", "content-length": String(mb * 1024 * 1024) },
          stream: gen(),
        };
      },
    },
    {
      method: "GET",
      path: "/status/:code",
      handler: (req) => ({
        status: Number(req.params.code),
        headers: { "x-custom": "yes", "set-cookie": ["a=1; Path=/", "b=2; Path=/"] },
        body: { code: Number(req.params.code) },
      }),
    },
    {
      method: "GET",
      path: "/teapot",
      handler: () => {
        throw new HttpError(418, "teapot", "I am a teapot");
      },
    },
    {
      // Whatever a container prints reaches the daemon's plugin log (admin API logs): plain lines and the SDK's own.
      method: "POST",
      path: "/log",
      handler: (req) => {
        console.log(String(req.query.msg ?? "hello"));
        console.error(`to stderr: ${String(req.query.msg ?? "hello")}`);
        return { logged: true };
      },
    },
    {
      // An unexpected error: the SDK answers 500 and logs it as an error line.
      method: "GET",
      path: "/boom",
      handler: () => {
        throw new Error("boom on purpose");
      },
    },
    {
      method: "POST",
      path: "/alloc",
      handler: (req) => {
        const mb = Number(req.query.mb ?? 512);
        for (let i = 0; i < mb; i++) hoard.push(Buffer.alloc(1024 * 1024, i & 0xff));
        return { allocated_mb: mb };
      },
    },
    {
      method: "POST",
      path: "/exit",
      handler: (req) => {
        setTimeout(() => process.exit(Number(req.query.code ?? 3)), 10);
        return { exiting: true };
      },
    },
    {
      method: "POST",
      path: "/hang",
      handler: () => {
        // Blocks the event loop for good: the health probe stops answering.
        for (;;) {}
      },
    },
    {
      method: "GET",
      path: "/probe/net",
      handler: async (req) => {
        const port = Number(req.query.port ?? 80);
        const hosts = String(req.query.hosts ?? "127.0.0.1").split(",");
        /** @type {Record<string, unknown>} */
        const tcp = {};
        for (const h of hosts) tcp[h] = await tryConnect(h, port);
        let dns;
        try {
          dns = await lookup(String(req.query.name ?? "example.com"));
        } catch (e) {
          dns = { error: /** @type {NodeJS.ErrnoException} */ (e).code ?? String(e) };
        }
        return { tcp, dns };
      },
    },
    {
      method: "GET",
      path: "/probe/fs",
      handler: (req) => {
        /** @type {Record<string, unknown>} */
        const out = {};
        for (const p of String(req.query.write ?? "/x").split(",")) {
          try {
            writeFileSync(p, "x");
            out[`write:${p}`] = "ok";
          } catch (e) {
            out[`write:${p}`] = /** @type {NodeJS.ErrnoException} */ (e).code;
          }
        }
        for (const p of String(req.query.list ?? "/run/plugin").split(",")) {
          try {
            out[`list:${p}`] = readdirSync(p);
          } catch (e) {
            out[`list:${p}`] = /** @type {NodeJS.ErrnoException} */ (e).code;
          }
        }
        return out;
      },
    },
    {
      kind: "ws",
      path: "/ws",
      handlers: {
        onMessage: async (conn, data) => {
          await conn.send(typeof data === "string" ? `echo:${data}` : data);
        },
      },
    },
  ];
}

// Started as the container's command: serve on /run/plugin/plugin.sock.
if (process.argv[1] === new URL(import.meta.url).pathname) {
  // Not `await import("./index.mjs")`: a module awaiting its own import deadlocks (exit 13).
  await serveContainerPlugin({ manifest, init, routes });
}
