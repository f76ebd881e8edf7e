import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pluginPaths, standaloneConfig } from "@hecate/sdk";
import { Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { type PluginSpec, WorkerPlugins, type WorkerPluginsOptions } from "../../src/worker/worker-plugins.js";

export interface Env {
  home: string;
  router: Router;
  server: Server;
  workers: WorkerPlugins;
  port: number;
  base: string;
  close(): Promise<void>;
}

export async function setup(opts: Partial<WorkerPluginsOptions> = {}): Promise<Env> {
  const home = mkdtempSync(join(tmpdir(), "hecate-rt-"));
  const router = new Router();
  const server = createHttpServer(router);
  const port = await listen(server);
  const workers = new WorkerPlugins({ router, home, ...opts });
  return {
    home,
    router,
    server,
    workers,
    port,
    base: `http://127.0.0.1:${port}`,
    async close() {
      await workers.close(1000);
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** Writes a plugin (callback module source + extra files relative to the plugin root) and returns its spec. */
export function writePlugin(
  home: string,
  name: string,
  version: string,
  code: string,
  files: Record<string, string | Buffer> = {},
): PluginSpec {
  const paths = pluginPaths(home, name);
  // Versioned code dir so two versions can coexist during a swap.
  const codeDir = join(paths.root, `dist-${version}`);
  for (const d of [codeDir, paths.static, paths.data]) mkdirSync(d, { recursive: true });
  const entry = join(codeDir, "index.js");
  writeFileSync(entry, code);
  for (const [rel, content] of Object.entries(files)) {
    const p = join(paths.root, rel);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, content);
  }
  const config = standaloneConfig(name, { paths, pluginVersion: version, standalone: false, storeId: null });
  return { name, version, root: paths.root, entry, staticDir: paths.static, config };
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Raw HTTP request: the path is sent exactly as given (no URL normalisation, unlike fetch). */
export function raw(
  port: number,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, method, path, headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

export const json = (r: RawResponse) => JSON.parse(r.body.toString("utf8"));

/** A minimal plugin answering `GET /who` with its name and version (for swap/fault/prefix tests). */
export function whoPlugin(name: string, version: string, extra = ""): string {
  return `
export function manifest() { return { name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }; }
export function init() {}
${extra}
export function routes() {
  return [
    { method: "GET", path: "/who", handler: () => ({ name: ${JSON.stringify(name)}, version: ${JSON.stringify(version)} }) },
    ...(typeof extraRoutes === "function" ? extraRoutes() : []),
  ];
}
`;
}
