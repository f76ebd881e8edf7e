/**
 * `hecate start`: runs the daemon in the foreground. The daemon is its own process (`@hecate/daemon/main`), so its
 * pino JSON logs can be piped through pino-pretty here and signals are forwarded for a graceful stop.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import pinoPretty from "pino-pretty";

export interface StartOptions {
  home: string;
  port?: string;
  /** Admin API + page port (default port + 1; "shared" = on the plugin port, less safe). */
  adminPort?: string;
  host?: string;
  /** Extra Host names (comma-separated) for the DNS-rebinding guard of both listeners. */
  allowedHosts?: string;
  logLevel?: string;
  requireSignature?: boolean;
  /** Raw JSON log lines (for log shippers / systemd-journald) instead of pretty ones. */
  json: boolean;
}

export function daemonMainPath(): string {
  return fileURLToPath(import.meta.resolve("@hecate/daemon/main"));
}

/** `<admin url>/admin/login?token=<run/admin.token>`: opening it sets the admin cookie. */
function loginLink(home: string, adminUrl: string): string {
  const token = readFileSync(join(home, "run", "admin.token"), "utf8").trim();
  return `${adminUrl}/admin/login?token=${encodeURIComponent(token)}`;
}

export async function startCommand(opts: StartOptions): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env, HECATE_HOME: opts.home };
  if (opts.port !== undefined) env.HECATE_PORT = opts.port;
  if (opts.adminPort !== undefined) env.HECATE_ADMIN_PORT = opts.adminPort;
  if (opts.host !== undefined) env.HECATE_HOST = opts.host;
  if (opts.allowedHosts !== undefined) env.HECATE_ALLOWED_HOSTS = opts.allowedHosts;
  if (opts.logLevel !== undefined) env.HECATE_LOG_LEVEL = opts.logLevel;
  if (opts.requireSignature) env.HECATE_REQUIRE_SIGNATURE = "1";
  const child = spawn(process.execPath, [daemonMainPath()], { env, stdio: ["ignore", "pipe", "inherit"] });
  const stdout = child.stdout as Readable;
  stdout.pipe(
    opts.json
      ? process.stdout
      : pinoPretty({
          colorize: Boolean(process.stdout.isTTY),
          translateTime: "SYS:HH:MM:ss.l",
          ignore: "pid,hostname,service",
          singleLine: true,
          destination: 1,
          sync: true,
        }),
  );
  // The daemon itself publishes run/url and run/admin-url; interactive runs also get the admin page's login link
  // (--json output, for log shippers and journald, never carries the token).
  if (!opts.json) {
    const lines = createInterface({ input: stdout });
    // (not closing the readline: that would pause the stream the log pipe reads too)
    lines.on("line", (line) => {
      const m = /^hecate admin on (\S+)/.exec(line);
      if (m) process.stdout.write(`hecate admin page: ${loginLink(opts.home, m[1])}\n`);
    });
  }
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const onInt = forward("SIGINT");
  const onTerm = forward("SIGTERM");
  process.on("SIGINT", onInt);
  process.on("SIGTERM", onTerm);
  return new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      process.off("SIGINT", onInt);
      process.off("SIGTERM", onTerm);
      resolve(code ?? (signal === "SIGINT" || signal === "SIGTERM" ? 0 : 1));
    });
  });
}
