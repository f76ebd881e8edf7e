/**
 * Test helpers: the REAL `hecate` binary (dist/src/main.js) as a child process, and a REAL daemon started through it
 * (`hecate start`) on a temp HECATE_HOME and an ephemeral port.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../src/main.js", import.meta.url));
export const FIXTURES = fileURLToPath(new URL("../../test/fixtures/", import.meta.url));

/**
 * The admin API contract check (the daemon's test/contract/recorder.ts): every answer a test or a CLI process gets
 * from the admin API is checked against openapi.json on the spot.
 */
const CONTRACT = new URL("../../../daemon/dist/test/contract/", import.meta.url);
const recorder = (await import(new URL("recorder.js", CONTRACT).href)) as {
  watch(origin: string, kind?: "admin" | "plugin"): void;
  unwatch(origin: string): void;
};
/** `--import` of the preload that checks every request of a CLI process (not `hecate start`: the daemon). */
const CONTRACT_PRELOAD = `--import=${new URL("watch-all.js", CONTRACT).href}`;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `hecate-cli-${prefix}-`));
}

export function runCli(
  args: string[],
  opts: { home?: string; cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  if (opts.home) env.HECATE_HOME = opts.home;
  if (args[0] !== "start") env.NODE_OPTIONS = [env.NODE_OPTIONS, CONTRACT_PRELOAD].filter(Boolean).join(" ");
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env, cwd: opts.cwd, timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs the CLI with --json and parses stdout; fails with the CLI's output when the exit code is not `expectCode`. */
// biome-ignore lint/suspicious/noExplicitAny: parsed JSON of the many result shapes, narrowed by each test
export async function cliJson<T = any>(
  args: string[],
  opts: Parameters<typeof runCli>[1] & { expectCode?: number } = {},
): Promise<T> {
  const r = await runCli([...args, "--json"], opts);
  const expected = opts.expectCode ?? 0;
  if (r.code !== expected) {
    throw new Error(`hecate ${args.join(" ")} exited ${r.code} (expected ${expected})\n${r.stdout}\n${r.stderr}`);
  }
  return JSON.parse(r.stdout) as T;
}

export interface TestDaemon {
  home: string;
  /** Plugins (run/url). */
  url: string;
  /** Admin API + page: their own port by default (run/admin-url). */
  adminUrl: string;
  token: string;
  process: ChildProcess;
  /** Everything the daemon printed (JSON log lines). */
  output: string[];
  /** SIGTERM to `hecate start` (forwarded to the daemon); resolves with its exit code. */
  stop(): Promise<number | null>;
}

/** Starts `hecate start --json --port 0` on a fresh home and resolves once it listens and /ready answers 200. */
export async function startTestDaemon(
  opts: { home?: string; env?: NodeJS.ProcessEnv; args?: string[] } = {},
): Promise<TestDaemon> {
  const home = opts.home ?? tempDir("home");
  const child = spawn(
    process.execPath,
    [CLI, "start", "--json", "--port", "0", "--log-level", "info", ...(opts.args ?? [])],
    {
      env: { ...process.env, ...opts.env, HECATE_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const output: string[] = [];
  let stderr = "";
  child.stderr?.on("data", (d) => {
    stderr += d;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  // main.js prints "hecate listening on <plugin url>" then "hecate admin on <admin url>"
  const [url, adminUrl] = await new Promise<[string, string]>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    let plugins: string | undefined;
    lines.on("line", (line) => {
      output.push(line);
      let msg = line;
      try {
        msg = JSON.parse(line).msg ?? line;
      } catch {
        // a plain line
      }
      const m = /(listening|admin) on (https?:\/\/\S+)/.exec(msg);
      if (m?.[1] === "listening") plugins = m[2].replace(/\/$/, "");
      else if (m && plugins) resolve([plugins, m[2].replace(/\/$/, "")]);
    });
    exited.then((code) =>
      reject(new Error(`daemon exited (${code}) before listening:\n${output.join("\n")}\n${stderr}`)),
    );
  });
  recorder.watch(adminUrl);
  recorder.watch(url, "plugin");
  const ready = await fetch(`${url}/ready`);
  if (ready.status !== 200) throw new Error(`daemon not ready after it printed its URL: ${ready.status}`);
  const token = readFileSync(join(home, "run", "admin.token"), "utf8").trim();
  return {
    home,
    url,
    adminUrl,
    token,
    process: child,
    output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const code = await exited;
      recorder.unwatch(adminUrl);
      recorder.unwatch(url);
      if (!opts.home) await rm(home, { recursive: true, force: true });
      return code;
    },
  };
}

/** GET a URL and return status + parsed body (JSON when possible). */
export async function get(
  url: string,
  headers: Record<string, string> = {},
  // biome-ignore lint/suspicious/noExplicitAny: a JSON body of any shape, or text
): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { headers });
  const text = await r.text();
  try {
    return { status: r.status, body: JSON.parse(text) };
  } catch {
    return { status: r.status, body: text };
  }
}
