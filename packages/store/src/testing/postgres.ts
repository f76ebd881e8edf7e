/**
 * For tests (`@hecate/store/testing/postgres`): a real PostgreSQL 15 started from Debian's binaries, initdb in a temp
 * dir, on a free loopback port (fsync on), trust auth for user `hecate`; the caller stops it (`stop()` removes the
 * dir). As root the server runs as the `postgres` user (it refuses root), via runuser. HECATE_PG_BIN overrides the
 * binaries' directory (default /usr/lib/postgresql/15/bin).
 */
import { execFile } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const BIN = process.env.HECATE_PG_BIN ?? "/usr/lib/postgresql/15/bin";

export interface PgServer {
  readonly url: string;
  readonly port: number;
  /** `pg_ctl restart -m fast`: every connection is dropped, the server comes back on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Runs a PostgreSQL binary as the `postgres` user when we are root. */
async function pgBin(tool: string, args: string[]): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  const [cmd, argv] = asRoot
    ? ["runuser", ["-u", "postgres", "--", join(BIN, tool), ...args]]
    : [join(BIN, tool), args];
  await run(cmd, argv, { timeout: 60_000 });
}

function userIds(name: string): { uid: number; gid: number } {
  const line = readFileSync("/etc/passwd", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`${name}:`));
  if (!line) throw new Error(`user ${name} not found (is the postgresql package installed?)`);
  const [, , uid, gid] = line.split(":");
  return { uid: Number(uid), gid: Number(gid) };
}

/** `port`: a loopback port chosen beforehand (e.g. a daemon pointed at it before the server exists); default a free one. */
export async function startPostgres(options: { port?: number } = {}): Promise<PgServer> {
  const dir = mkdtempSync(join(tmpdir(), "hecate-pg-"));
  chmodSync(dir, 0o755);
  if (process.getuid?.() === 0) {
    const { uid, gid } = userIds("postgres");
    chownSync(dir, uid, gid);
  }
  const data = join(dir, "data");
  const log = join(dir, "log");
  const port = options.port ?? (await freePort());
  await pgBin("initdb", ["-D", data, "-A", "trust", "-U", "hecate", "--no-sync"]);
  const opts = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200`;
  const ctl = (cmd: string, extra: string[] = []) => pgBin("pg_ctl", [cmd, "-D", data, "-l", log, "-w", ...extra]);
  try {
    await ctl("start", ["-o", opts]);
  } catch (error) {
    let tail = "";
    try {
      tail = readFileSync(log, "utf8").slice(-2000);
    } catch {}
    throw new Error(`postgres did not start: ${(error as Error).message}\n${tail}`);
  }
  let stopped = false;
  return {
    url: `postgres://hecate@127.0.0.1:${port}/postgres`,
    port,
    restart: () => ctl("restart", ["-m", "fast", "-o", opts]),
    async stop() {
      if (stopped) return;
      stopped = true;
      await ctl("stop", ["-m", "fast"]).catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
