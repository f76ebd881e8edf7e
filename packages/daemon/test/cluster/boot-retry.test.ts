/**
 * Cluster mode, PostgreSQL not there at boot: the daemon's listeners come up and its admin API answers 503
 * `store_unavailable` naming the store (no password) and the reason, `/ready` says 503, `hecate plugin list` exits
 * at once with that message; once PostgreSQL is started (on the port the node was given) the node boots on by itself
 * (no restart), joins, catches up on a plugin installed through another node meanwhile and serves the next one.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { freePort, type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import { startDaemon } from "../../src/daemon.js";
import { unwatch, watch } from "../contract/recorder.js";
import { type ApiResponse, buildPackage, until } from "../lifecycle/helpers.js";
import { servedVersion, startNode, untilServed } from "./helpers.js";

const CLI = fileURLToPath(new URL("../../../../cli/dist/src/main.js", import.meta.url));
const CONTRACT_PRELOAD = `--import=${new URL("../contract/watch-all.js", import.meta.url).href}`;
const run = promisify(execFile);
const gzip = { "content-type": "application/gzip" };

const work = mkdtempSync(join(tmpdir(), "hecate-boot-retry-"));
let server: PgServer | undefined;
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of closers) await c().catch(() => {});
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

test("PostgreSQL unreachable at boot: admin API says so (503 store_unavailable), the node boots by itself once it is up and catches up", async (t) => {
  const [p1, p2] = await Promise.all([
    buildPackage(work, { name: "meanwhile", version: "1.0.0" }),
    buildPackage(work, { name: "after", version: "1.0.0" }),
  ]);
  const port = await freePort();
  // a password in the URL (trust auth ignores it): it must appear in no answer
  const url = `postgres://hecate:s3cretpw@127.0.0.1:${port}/postgres`;
  const home = join(work, "home-x");
  const t0 = performance.now();
  const starting = startDaemon({ home, port: 0, logLevel: "silent", containers: false, storeUrl: url, nodeId: "x" });
  let startError: unknown;
  starting.catch((err) => (startError = err));

  // the admin listener is up and published while the store is not
  const adminFile = join(home, "run", "admin-url");
  await until(() => existsSync(adminFile) || startError !== undefined, 10_000, "run/admin-url");
  assert.equal(startError, undefined);
  const adminUrl = readFileSync(adminFile, "utf8").trim();
  watch(adminUrl);
  const token = readFileSync(join(home, "run", "admin.token"), "utf8").trim();
  const api = (method: string, path: string, body?: Buffer): Promise<ApiResponse> =>
    fetch(adminUrl + path, {
      method,
      body,
      headers: { authorization: `Bearer ${token}`, ...(body ? gzip : {}) },
      duplex: "half",
    } as RequestInit) as Promise<ApiResponse>;

  const list = await api("GET", "/admin/api/plugins");
  assert.equal(list.status, 503);
  const text = await list.text();
  assert.doesNotMatch(text, /s3cretpw/, "no password in the answer");
  const err = JSON.parse(text).error;
  assert.equal(err.code, "store_unavailable");
  assert.match(err.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  assert.match(err.message, /ECONNREFUSED/);
  assert.equal(err.details.store, `postgres://hecate@127.0.0.1:${port}/postgres#plugins`);
  assert.ok(err.details.attempts >= 1);
  t.diagnostic(`while down: ${err.message}`);
  const install = await api("POST", "/admin/api/plugins", readFileSync(p1));
  assert.equal(install.status, 503);
  assert.equal((await install.json()).error.code, "store_unavailable");
  assert.equal((await api("GET", "/admin/api/health")).status, 503);
  assert.equal((await fetch(`${adminUrl}/admin/api/plugins`)).status, 401, "no token: no store details");
  const ready = await fetch(`${adminUrl}/ready`);
  assert.equal(ready.status, 503);
  assert.deepEqual(await ready.json(), { ready: false });

  // the CLI answers at once with the reason (over the Unix socket)
  const c0 = performance.now();
  const cli = await run(process.execPath, [CLI, "plugin", "list"], {
    env: { ...process.env, HECATE_HOME: home, NODE_OPTIONS: CONTRACT_PRELOAD },
    timeout: 30_000,
  }).then(
    () => assert.fail("hecate plugin list succeeded while the store is down"),
    (e: { code: number; stderr: string; stdout: string }) => e,
  );
  const cliMs = performance.now() - c0;
  assert.notEqual(cli.code, 0);
  assert.match(cli.stderr + cli.stdout, /waiting for its lifecycle store/);
  assert.doesNotMatch(cli.stderr + cli.stdout, /s3cretpw/);
  t.diagnostic(`hecate plugin list while down: exit ${cli.code} after ${cliMs.toFixed(0)} ms: ${cli.stderr.trim()}`);

  // PostgreSQL comes up; another node starts and installs a plugin while x is still in its backoff (or just joined)
  server = await startPostgres({ port });
  const up = performance.now();
  const a = await startNode(work, server.url, "a");
  closers.push(() => a.stop());
  const r1 = await a.api("POST", "/admin/api/plugins", { body: readFileSync(p1), headers: gzip });
  assert.equal(r1.status, 201, await r1.clone().text());

  const x = await starting;
  closers.unshift(async () => {
    await x.close();
    unwatch(x.adminUrl);
  });
  const joined = performance.now() - up;
  t.diagnostic(
    `x booted ${joined.toFixed(0)} ms after PostgreSQL was up (${(performance.now() - t0).toFixed(0)} ms after its start)`,
  );
  assert.ok(joined < 15_000, `joined after ${joined.toFixed(0)} ms`);
  assert.equal(x.adminUrl, adminUrl);
  await untilServed([x], "meanwhile", "1.0.0", 10_000);
  assert.equal((await api("GET", "/ready")).status, 200);
  const listed = await (await api("GET", "/admin/api/plugins")).json();
  assert.deepEqual(
    listed.cluster.nodes.map((n: { node: string }) => n.node),
    ["a", "x"],
  );

  // a plugin installed after the join through A: served on x
  const r2 = await a.api("POST", "/admin/api/plugins", { body: readFileSync(p2), headers: gzip });
  assert.equal(r2.status, 201, await r2.clone().text());
  await untilServed([x], "after", "1.0.0", 5000);
  assert.equal(await servedVersion(x, "meanwhile"), "1.0.0");
});
