#!/usr/bin/env node
/**
 * `node packages/daemon/dist/src/main.js`: the daemon in the foreground. Env: HECATE_HOME, HECATE_PORT, HECATE_HOST,
 * HECATE_ADMIN_PORT (admin API + page port; default HECATE_PORT + 1, ephemeral when HECATE_PORT=0; "shared" = on the
 * plugin port, less safe), HECATE_LOG_LEVEL, HECATE_REQUIRE_SIGNATURE, HECATE_CONTAINERS (auto|1|0),
 * HECATE_ALLOWED_HOSTS (extra Host names for both listeners, comma-separated: `name` or `name:port`),
 * HECATE_ADMIN_SESSION_TTL_S (admin page login lifetime, default 43200 = 12 h), HECATE_METRICS=0 (no /metrics, no
 * request counting), and the plugin listener's caps
 * HECATE_MAX_CONNECTIONS, HECATE_MAX_CONNECTIONS_PER_CLIENT, HECATE_MAX_WEBSOCKETS, HECATE_MAX_WEBSOCKETS_PER_CLIENT,
 * HECATE_RESERVED_FDS (defaults from the fd limit, see http/conn-limits.ts),
 * HECATE_CONTAINER_EXEC_TMP=1 (a container manifest may ask for an executable /tmp), HECATE_CONTAINER_MAX_DATA_MB
 * (cap of container data quotas, default 1024).
 * plugin request limits:
 * HECATE_HANDLER_TIMEOUT_MS (deadline of a route that sets none, default 30000, 0 = none), HECATE_MAX_HANDLER_TIMEOUT_MS
 * (cap on every route's deadline, 0 = no cap; default), HECATE_MAX_REPLY_BYTES (largest non-streamed reply body,
 * default 67108864 = 64 MiB).
 * HECATE_STORE_URL=postgres://user@host:port/db puts the lifecycle store in PostgreSQL (default: SQLite in HECATE_HOME).
 * `isolation: "shared"` plugins: HECATE_ALLOW_SHARED=0 refuses them (they fail to load, stage `policy`);
 * HECATE_SHARED_RECYCLE_GENERATIONS (default 16) / HECATE_SHARED_RECYCLE_MB (default 256): the main plugin host is
 * recycled (zero downtime) once unloaded shared generations pass either (0 = off; see supervisor/shared-policy.ts).
 * Daemons on one PostgreSQL database form a cluster; HECATE_NODE_ID names this node (default: kept in
 * $HECATE_HOME/node-id).
 * pino JSON logs on stdout.
 * SIGTERM / SIGINT -> graceful close (drain, unload plugins, close stores), exit 0.
 * Test hook: HECATE_TEST_CRASH_AFTER=<event type> (e.g. plugin_package_extracted_v1) makes the process SIGKILL itself
 * right after appending the first such event (crash-recovery tests).
 */
import { hecateHome } from "@hecate/sdk";
import { type DaemonOptions, startDaemon } from "./daemon.js";
import type { ConnectionLimits } from "./http/conn-limits.js";
import { parseHostList } from "./http/host-allow.js";
import { type SharedPolicyOptions, sharedPolicyFromEnv } from "./supervisor/shared-policy.js";

const LIMIT_ENV: [keyof ConnectionLimits, string][] = [
  ["maxConnections", "HECATE_MAX_CONNECTIONS"],
  ["maxConnectionsPerClient", "HECATE_MAX_CONNECTIONS_PER_CLIENT"],
  ["maxWebSockets", "HECATE_MAX_WEBSOCKETS"],
  ["maxWebSocketsPerClient", "HECATE_MAX_WEBSOCKETS_PER_CLIENT"],
  ["reservedFds", "HECATE_RESERVED_FDS"],
];

const RUNTIME_ENV: ["handlerTimeoutMs" | "maxHandlerTimeoutMs" | "maxReplyBytes", string][] = [
  ["handlerTimeoutMs", "HECATE_HANDLER_TIMEOUT_MS"],
  ["maxHandlerTimeoutMs", "HECATE_MAX_HANDLER_TIMEOUT_MS"],
  ["maxReplyBytes", "HECATE_MAX_REPLY_BYTES"],
];

/** A non-negative integer env value; unset = undefined; anything else exits 2 with a clear message. */
function intEnv(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`${name} must be a non-negative integer, got ${JSON.stringify(v)}`);
    process.exit(2);
  }
  return n;
}

function containersOption(v: string | undefined): boolean | "auto" {
  if (v === "1" || v === "true") return true;
  if (v === "0" || v === "false") return false;
  return "auto";
}

/** undefined = default (next to HECATE_PORT), null = invalid. */
function adminPortOption(v: string | undefined): number | "shared" | undefined | null {
  if (v === undefined || v === "") return undefined;
  if (v === "shared") return "shared";
  const n = Number(v);
  return Number.isInteger(n) && n >= 0 && n <= 65535 ? n : null;
}

async function main(): Promise<void> {
  // unset: startDaemon's default (7770)
  const port = process.env.HECATE_PORT !== undefined ? Number(process.env.HECATE_PORT) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
    console.error(`HECATE_PORT must be a port number (0-65535), got ${JSON.stringify(process.env.HECATE_PORT)}`);
    process.exit(2);
  }
  const adminPort = adminPortOption(process.env.HECATE_ADMIN_PORT);
  if (adminPort === null) {
    console.error(
      `HECATE_ADMIN_PORT must be a port number (0-65535) or "shared", got ${JSON.stringify(process.env.HECATE_ADMIN_PORT)}`,
    );
    process.exit(2);
  }
  const maxData = process.env.HECATE_CONTAINER_MAX_DATA_MB;
  if (maxData !== undefined && maxData !== "" && !(Number.isInteger(Number(maxData)) && Number(maxData) >= 8)) {
    console.error(`HECATE_CONTAINER_MAX_DATA_MB must be an integer >= 8 (MiB), got ${JSON.stringify(maxData)}`);
    process.exit(2);
  }
  const limits: Partial<ConnectionLimits> = {};
  for (const [key, env] of LIMIT_ENV) {
    const n = intEnv(env);
    if (n !== undefined) limits[key] = n;
  }
  const sessionTtlS = intEnv("HECATE_ADMIN_SESSION_TTL_S");
  const runtime: NonNullable<DaemonOptions["runtime"]> = {};
  for (const [key, env] of RUNTIME_ENV) {
    const n = intEnv(env);
    if (n !== undefined) runtime[key] = n;
  }
  let shared: SharedPolicyOptions;
  try {
    shared = sharedPolicyFromEnv(process.env);
  } catch (err) {
    console.error((err as Error).message);
    process.exit(2);
  }
  const daemon = await startDaemon({
    shared,
    home: hecateHome(),
    ...(process.env.HECATE_STORE_URL ? { storeUrl: process.env.HECATE_STORE_URL } : {}),
    ...(process.env.HECATE_NODE_ID ? { nodeId: process.env.HECATE_NODE_ID } : {}),
    ...(port !== undefined ? { port } : {}),
    host: process.env.HECATE_HOST || "127.0.0.1",
    ...(adminPort !== undefined ? { adminPort } : {}),
    logLevel: process.env.HECATE_LOG_LEVEL || "info",
    containers: containersOption(process.env.HECATE_CONTAINERS),
    containerPolicy: {
      allowExecTmp: process.env.HECATE_CONTAINER_EXEC_TMP === "1",
      ...(maxData ? { maxDataQuotaMb: Number(maxData) } : {}),
    },
    ...(process.env.HECATE_REQUIRE_SIGNATURE === "1" ? { requireSignature: true } : {}),
    allowedHosts: parseHostList(process.env.HECATE_ALLOWED_HOSTS),
    limits,
    runtime,
    ...(sessionTtlS !== undefined ? { adminSessionTtlMs: sessionTtlS * 1000 } : {}),
    metrics: process.env.HECATE_METRICS !== "0",
  });
  console.log(`hecate listening on ${daemon.url}`);
  // Always printed (equal to the plugin URL with HECATE_ADMIN_PORT=shared): the daemon also writes it to run/admin-url.
  console.log(`hecate admin on ${daemon.adminUrl}`);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    daemon.logger.info({ signal }, "signal received");
    daemon.close().then(
      () => process.exit(0),
      (err) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err) => {
  console.error(`hecate: ${(err as Error).stack ?? err}`);
  process.exit(1);
});
