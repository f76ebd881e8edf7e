/**
 * Admin over the Unix socket is decided by the peer's credentials (SO_PEERCRED), never by "came from the socket":
 * - the daemon's own process dialing a plugin-planted symlink to hecate.sock (the container-proxy attack of issue 10)
 *   gets 401 like any TCP caller without a token;
 * - another uid is refused by the 0600 socket in the 0700 run dir, and still gets 401 when those modes are loosened;
 * - a run dir owned by another uid fails the start.
 */
import assert from "node:assert/strict";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Pool } from "undici";
import { startDaemon } from "../../src/daemon.js";
import { startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { childSocketRequest } from "./socket-client.js";

const NOBODY = 65534;
let d: TestDaemon;

before(async () => {
  d = await startTestDaemon();
});
after(async () => {
  await d?.stop();
});

test("the daemon's own connection through a plugin's symlink to hecate.sock is not trusted (401, token needed)", async () => {
  const pluginDir = join(d.work, "containers", "evil.1");
  mkdirSync(pluginDir, { recursive: true });
  const link = join(pluginDir, "plugin.sock");
  symlinkSync(d.socketPath, link);
  // exactly how the container proxy dials a plugin: an undici Pool on the plugin's socket path
  const pool = new Pool("http://localhost", { socketPath: link });
  try {
    const list = await pool.request({ method: "GET", path: "/admin/api/plugins" });
    assert.equal(list.statusCode, 401);
    assert.equal(((await list.body.json()) as { error: { code: string } }).error.code, "unauthorized");
    const install = await pool.request({
      method: "POST",
      path: "/admin/api/plugins",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ path: "/etc/passwd" }),
    });
    assert.equal(install.statusCode, 401);
    await install.body.dump();
    const login = await pool.request({ method: "GET", path: "/admin/login" });
    assert.equal(login.statusCode, 401, "no session cookie for an untrusted socket peer without the token");
    await login.body.dump();
    // the token still works there, as over TCP
    const withToken = await pool.request({
      method: "GET",
      path: "/admin/api/plugins",
      headers: { authorization: `Bearer ${d.token}` },
    });
    assert.equal(withToken.statusCode, 200);
    await withToken.body.dump();
  } finally {
    await pool.close();
  }
  // another process of the same uid through the same link: trusted (the CLI's case)
  assert.equal((await childSocketRequest(link, "/admin/api/plugins")).status, 200);
});

test("another uid cannot connect (0600 socket, 0700 run dir) and is not trusted even when the modes are loosened", async () => {
  assert.equal(process.geteuid?.(), 0, "this test runs as root (CI does) to act as another uid");
  const denied = await childSocketRequest(d.socketPath, "/admin/api/plugins", { uid: NOBODY });
  assert.equal(denied.status, "EACCES");
  const runDir = join(d.home, "run");
  chmodSync(runDir, 0o711);
  chmodSync(d.socketPath, 0o666);
  chmodSync(d.home, 0o711);
  chmodSync(d.work, 0o711);
  try {
    const r = await childSocketRequest(d.socketPath, "/admin/api/plugins", { uid: NOBODY });
    assert.equal(r.status, 401, r.body);
  } finally {
    chmodSync(runDir, 0o700);
    chmodSync(d.socketPath, 0o600);
  }
});

test("a run dir owned by another uid fails the start", async () => {
  const home = mkdtempSync(join(tmpdir(), "hecate-peer-"));
  try {
    mkdirSync(join(home, "run"));
    chownSync(join(home, "run"), NOBODY, NOBODY);
    await assert.rejects(
      startDaemon({ home, port: 0, logLevel: "silent", containers: false }),
      /run must be a directory owned by uid 0/,
    );
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
