/**
 * A hostile container plugin (fixtures/hostile) tampers with its socket dir to make the daemon connect to its admin
 * socket (trusted without a token) or to Podman's rootful API, through the real daemon (admin API, lifecycle, plugin
 * port, real Podman): a symlink to the admin socket and to the Podman socket (before the daemon looks and after it
 * verified), a hard link, moving the socket and serving a second one on the path (and trying to move the socket dir
 * itself), and a swap between the health probe and the proxy's first connection. In every case requests through
 * `/plugin/{name}/api/...` reach the plugin's own socket or fail cleanly: never admin JSON, never a Podman answer,
 * the plugin list unchanged. Also: the data image survives a daemon restart and is removed by a purge.
 */
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packPlugin } from "@hecate/package";
import { request } from "undici";
import { WebSocket } from "ws";
import { isMountPoint } from "../../src/container/host-mounts.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";
import { unixRequest } from "../lifecycle/helpers.js";
import { postJson, removeHomeContainers, repoRoot, skipReason } from "./helpers.js";

const skip = skipReason();
const fixture = join(repoRoot, "packages/daemon/test/container/fixtures/hostile");

/** Packs the hostile fixture under `name` (its start-up behaviour follows the name's suffix). */
async function pack(work: string, name: string, container: Record<string, unknown> = {}): Promise<string> {
  const src = mkdtempSync(join(work, "src-"));
  cpSync(fixture, src, { recursive: true });
  const file = join(src, "manifest.json");
  const m = JSON.parse(readFileSync(file, "utf8"));
  writeFileSync(file, JSON.stringify({ ...m, name, container: { ...m.container, ...container } }));
  const out = join(work, `${name}.tar.gz`);
  await packPlugin(src, out);
  return out;
}

/** What `POST /admin/api/plugins?wait=loaded` answers: the plugin view, or an error with it in the details. */
interface InstallAnswer {
  status?: string;
  error?: { code: string; message: string; details: { plugin: { status: string } } };
}

interface Answer {
  status: number;
  text: string;
  json?: Record<string, unknown>;
}

async function call(url: string, method: "GET" | "POST" = "GET"): Promise<Answer> {
  if (method === "POST") return postJson(url);
  const r = await request(url);
  const text = await r.body.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.statusCode, text, json };
}

/** Neither the admin API's answer (`{plugins: [...]}`, a plugin view) nor Podman's (`OK`, capitalised keys, lists). */
function assertNotAdminOrPodman(a: Answer, what: string): void {
  const json = a.json as Record<string, unknown> | undefined;
  assert.ok(!(json && ("plugins" in json || "flags" in json || "lastError" in json)), `admin JSON: ${what}`);
  assert.ok(a.text.trim() !== "OK", `podman _ping: ${what}`);
  assert.ok(!Array.isArray(json), `a list (podman containers): ${what}`);
  assert.ok(!(json && Object.keys(json).some((k) => /^[A-Z]/.test(k))), `podman JSON: ${what}`);
}

describe("hostile container plugin vs. the daemon's connections (real podman, real daemon)", { skip }, () => {
  let work: string;
  let home: string;
  let d: Daemon;
  const names = () =>
    d.lifecycle
      .list()
      .map((p) => p.name)
      .sort();

  const install = async (archive: string) => {
    const r = await unixRequest(d.socketPath, "POST", "/admin/api/plugins?wait=loaded", readFileSync(archive), {
      "content-type": "application/gzip",
    });
    return { status: r.status, body: r.json() as InstallAnswer };
  };

  /** Every request a hostile plugin might redirect, through the plugin port: each must come from the plugin. */
  async function assertOnlyPlugin(name: string, expectFrom: "plugin" | null): Promise<void> {
    const before = names();
    const base = `${d.url}/plugin/${name}/api`;
    const answers = [
      await call(`${base}/admin/api/plugins`),
      await call(`${base}/admin/api/plugins`, "POST"),
      await call(`${base}/_ping`),
      await call(`${base}/v1.41/info`),
      await call(`${base}/v1.41/containers/json`),
    ];
    for (const a of answers) {
      assertNotAdminOrPodman(a, `${name}: ${a.status} ${a.text}`);
      if (expectFrom) {
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json?.from, expectFrom, a.text);
      } else assert.ok([404, 502, 503].includes(a.status), `${name}: ${a.status} ${a.text}`);
    }
    assert.deepEqual(names(), before, "the plugin list is unchanged");
  }

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "hct-hostile-"));
    home = join(work, "home");
    d = await startDaemon({ home, port: 0, logLevel: "silent", containers: true, trustOwnProcessOnSocket: true });
  });
  after(async () => {
    await d?.close();
    await removeHomeContainers(home);
    rmSync(work, { recursive: true, force: true });
  });

  for (const [suffix, reason] of [
    ["pre-admin", /a symlink/],
    ["pre-podman", /a symlink/],
    ["pre-hardlink", /2 links/],
    ["pre-dir", /a directory/],
    ["pre-file", /a regular file/],
  ] as const) {
    it(`plugin.sock tampered before the daemon looks (${suffix}): the load fails with socket_untrusted`, async () => {
      const name = `evil-${suffix}`;
      const r = await install(await pack(work, name));
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.match(r.body.error?.message ?? "", /socket_untrusted/);
      assert.match(r.body.error?.message ?? "", reason);
      assert.equal(r.body.error?.details.plugin.status, "failed");
      // A foreign inode cannot be hard-linked in: the socket dir is its own filesystem.
      if (suffix === "pre-hardlink") assert.match(r.body.error?.message ?? "", /"foreign":"EXDEV"/);
      // Logged as a plugin log line.
      const logs = await unixRequest(d.socketPath, "GET", `/admin/api/plugins/${name}/logs`);
      assert.match(logs.body, /plugin\.sock refused/);
      await assertOnlyPlugin(name, null);
      assert.ok(!existsSync(join(home, "run", "containers", `${name}.1`)), "socket dir unmounted and removed");
    });
  }

  it("tampering after the daemon verified the socket: every request still reaches the plugin's own socket", async () => {
    const r = await install(await pack(work, "evil"));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await assertOnlyPlugin("evil", "plugin");
    const attack = async (kind: string) => {
      const a = await call(`${d.url}/plugin/evil/api/attack?kind=${kind}`, "POST");
      assert.equal(a.status, 200, a.text);
      return a.json as Record<string, string>;
    };
    // (c) hard link: its own socket can be linked (same inode), a foreign inode cannot enter the tmpfs.
    const hard = await attack("hardlink");
    assert.equal(hard.ownSocket, "ok");
    assert.equal(hard.foreign, "EXDEV");
    await assertOnlyPlugin("evil", "plugin");
    // (d) the socket moved away and a second server on the path; the socket dir cannot be moved or replaced.
    const moved = await attack("rename-second");
    assert.equal(moved.rename, "ok");
    assert.ok(["EBUSY", "EACCES", "EPERM"].includes(moved.renameDir), JSON.stringify(moved));
    assert.ok(["EBUSY", "EACCES", "EPERM"].includes(moved.rmdirDir), JSON.stringify(moved));
    await assertOnlyPlugin("evil", "plugin");
    // (a) / (b) plugin.sock replaced by a symlink to the admin socket, then to Podman's.
    await attack("symlink-admin");
    await assertOnlyPlugin("evil", "plugin");
    await attack("symlink-podman");
    await assertOnlyPlugin("evil", "plugin");
    // WebSocket upgrades are tunnelled to the verified socket too.
    const ws = new WebSocket(`${d.url.replace("http", "ws")}/plugin/evil/api/ws`);
    const reply = await new Promise<string>((resolve, reject) => {
      ws.once("open", () => ws.send("hi"));
      ws.once("message", (m) => resolve(String(m)));
      ws.once("error", reject);
    });
    ws.close();
    assert.equal(reply, "plugin:hi");
    // Unlink + re-bind: the verified inode is dead; requests fail cleanly (never reach the new socket).
    await attack("rebind");
    await new Promise((r) => setTimeout(r, 300));
    const dead = await call(`${d.url}/plugin/evil/api/whoami`);
    assert.equal(dead.status, 502, dead.text);
    assertNotAdminOrPodman(dead, dead.text);
    assert.doesNotMatch(dead.text, /rebound/);
  });

  it("(e) swapped between the health probe and the proxy's first connection: the proxy keeps the probed socket", async () => {
    const r = await install(await pack(work, "evil-race"));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    await assertOnlyPlugin("evil-race", "plugin");
    const state = await call(`${d.url}/plugin/evil-race/api/state`);
    assert.equal(state.json?.swapped, true, "the plugin did swap plugin.sock for a symlink to the admin socket");
  });

  it("the data image survives a daemon restart; remove with purge deletes it", async () => {
    // Its own home: a restart of the daemon above would reload every plugin of the tests before.
    await d.close();
    home = join(work, "home-data");
    d = await startDaemon({ home, port: 0, logLevel: "silent", containers: true, trustOwnProcessOnSocket: true });
    const r = await install(await pack(work, "evil-data", { writable_data: true, data_quota_mb: 8 }));
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const put = await call(`${d.url}/plugin/evil-data/api/probe/write?path=/data/keep&text=kept`, "POST");
    assert.equal(put.json?.write, "ok");
    const image = join(home, "plugins", "evil-data", "data.img");
    assert.ok(existsSync(image));
    await d.close();
    assert.equal(isMountPoint(join(home, "plugins", "evil-data", "data")), false, "unmounted at close");
    d = await startDaemon({ home, port: 0, logLevel: "silent", containers: true, trustOwnProcessOnSocket: true });
    const got = await call(`${d.url}/plugin/evil-data/api/probe/write?path=/data/keep&text=kept`, "POST");
    assert.equal(got.json?.text, "kept");
    const del = await unixRequest(d.socketPath, "DELETE", "/admin/api/plugins/evil-data?purge=1");
    assert.equal(del.status, 200, del.body);
    assert.equal(existsSync(image), false, "purge removed the image");
    assert.equal(isMountPoint(join(home, "plugins", "evil-data", "data")), false);
  });
});
