/** Shared by the lifecycle/admin tests: real plugin packages (packPlugin), a real daemon, real HTTP. */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { packPlugin } from "@hecate/package";
import { type Daemon, type DaemonOptions, startDaemon } from "../../src/daemon.js";
import { record, unwatch, watch } from "../contract/recorder.js";

export const MAIN_JS = fileURLToPath(new URL("../../src/main.js", import.meta.url));

export interface PluginSource {
  name: string;
  version: string;
  /** Extra module code (top level of dist/index.js). */
  extra?: string;
  /** Body of init(config). */
  init?: string;
  /** Extra route objects (JS source of array items). */
  routes?: string;
  /** Extra files relative to the package root. */
  files?: Record<string, string | Buffer>;
  manifest?: Record<string, unknown>;
}

/** The callback module of a small test plugin: GET /who -> {name, version}; static index.html says its version. */
export function pluginCode(p: PluginSource): string {
  const n = JSON.stringify(p.name);
  const v = JSON.stringify(p.version);
  return `
import { writeFileSync } from "node:fs";
import { join } from "node:path";
${p.extra ?? ""}
export function manifest() { return { name: ${n}, version: ${v} }; }
export async function init(config) {
  writeFileSync(join(config.dataDir, "init-" + ${v} + ".txt"), "ok");
  ${p.init ?? ""}
}
export function routes() {
  return [
    { method: "GET", path: "/who", handler: () => ({ name: ${n}, version: ${v} }) },
    ${p.routes ?? ""}
  ];
}
`;
}

/** Writes the plugin's source dir into `dir` and returns it. */
export function writePluginDir(dir: string, p: PluginSource): string {
  const files: Record<string, string | Buffer> = {
    "manifest.json": JSON.stringify({ name: p.name, version: p.version, ...p.manifest }, null, 2),
    "dist/index.js": pluginCode(p),
    "priv/static/index.html": `<h1>${p.name} ${p.version}</h1>`,
    ...p.files,
  };
  for (const [rel, content] of Object.entries(files)) {
    const f = join(dir, rel);
    mkdirSync(dirname(f), { recursive: true });
    writeFileSync(f, content);
  }
  return dir;
}

/** Builds `{name}-{version}.tar.gz` in `workDir` with the package module's packPlugin. */
export async function buildPackage(workDir: string, p: PluginSource): Promise<string> {
  const src = writePluginDir(mkdtempSync(join(workDir, `src-${p.name}-`)), p);
  const out = join(workDir, `${p.name}-${p.version}-${Math.random().toString(36).slice(2)}.tar.gz`);
  await packPlugin(src, out);
  return out;
}

/** fetch's Response with an untyped json() (tests assert on the shape). */
export interface ApiResponse extends Response {
  // biome-ignore lint/suspicious/noExplicitAny: test assertions inspect arbitrary JSON
  json(): Promise<any>;
}

export interface TestDaemon extends Daemon {
  work: string;
  /** fetch with the admin token. */
  api(
    method: string,
    path: string,
    init?: { body?: string | Buffer | Uint8Array; headers?: Record<string, string> },
  ): Promise<ApiResponse>;
  stop(): Promise<void>;
}

export async function startTestDaemon(opts: Partial<DaemonOptions> = {}): Promise<TestDaemon> {
  const work = mkdtempSync(join(tmpdir(), "hecate-lc-"));
  const home = opts.home ?? join(work, "home");
  const d = await startDaemon({ home, port: 0, logLevel: "silent", containers: false, ...opts });
  // every answer of this daemon's admin API that a test gets is checked against openapi.json (contract/recorder.ts)
  watch(d.adminUrl);
  watch(d.url, "plugin");
  return Object.assign(d, {
    work,
    api: (
      method: string,
      path: string,
      init: { body?: string | Buffer | Uint8Array; headers?: Record<string, string> } = {},
    ) =>
      fetch(d.adminUrl + path, {
        method,
        body: init.body,
        headers: { authorization: `Bearer ${d.token}`, ...init.headers },
        duplex: "half",
      } as RequestInit) as Promise<ApiResponse>,
    async stop() {
      await d.close();
      unwatch(d.adminUrl);
      unwatch(d.url);
      rmSync(work, { recursive: true, force: true });
    },
  });
}

export interface UnixResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  // biome-ignore lint/suspicious/noExplicitAny: test assertions inspect arbitrary JSON
  json(): any;
}

/** One request over the daemon's Unix socket (no token needed there). */
export function unixRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
): Promise<UnixResponse> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { host: "localhost", ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("error", reject);
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        try {
          record({ method, path, status: res.statusCode ?? 0, headers: flatHeaders(res.headers), body: text });
        } catch (err) {
          reject(err);
          return;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text, json: () => JSON.parse(text) });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function flatHeaders(h: Record<string, string | string[] | undefined>): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(h)) out[k] = Array.isArray(v) ? v.join(", ") : v;
  return out;
}

export interface ChildDaemon {
  child: ChildProcess;
  socketPath: string;
  url: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

/** Starts `main.js` as a child process on `home` (ephemeral port); `url` resolves from its "listening" line. */
export function spawnDaemon(home: string, env: Record<string, string> = {}): ChildDaemon {
  const child = spawn(process.execPath, [MAIN_JS], {
    env: {
      ...process.env,
      HECATE_HOME: home,
      HECATE_PORT: "0",
      HECATE_LOG_LEVEL: "warn",
      HECATE_CONTAINERS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const url = new Promise<string>((resolve, reject) => {
    const onData = (c: Buffer) => {
      out += c.toString();
      const m = /hecate listening on (\S+)/.exec(out);
      const a = /hecate admin on (\S+)/.exec(out);
      if (a) watch(a[1]);
      if (m) {
        watch(m[1], "plugin");
        resolve(m[1]);
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (c: Buffer) => {
      out += c.toString();
    });
    child.once("exit", (code, signal) =>
      reject(new Error(`daemon exited (${code ?? signal}) before listening:\n${out}`)),
    );
  });
  url.catch(() => {});
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, socketPath: join(home, "run", "hecate.sock"), url, exited, output: () => out };
}

// biome-ignore lint/suspicious/noExplicitAny: test assertions inspect arbitrary JSON
export async function getJson(url: string): Promise<any> {
  return (await fetch(url)).json();
}

/** Polls `fn` until it returns a truthy value (for conditions only observable from outside a child process). */
export async function until<T>(fn: () => T | Promise<T>, timeoutMs = 20_000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
