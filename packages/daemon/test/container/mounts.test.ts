/**
 * What a container plugin can write, and where it can run what it wrote (real Podman, the hostile fixture's probes):
 * the socket dir is a 1 MiB tmpfs, /tmp, /var/tmp, /run/plugin, /dev/shm and /data are noexec (a dropped ELF does not
 * run), /tmp is usable by the plugin's uid, an executable /tmp needs both the manifest and the operator, and the
 * data dir is an ext4 image of `container.data_quota_mb` (ENOSPC past it, the host disk untouched) that survives
 * restarts, upgrades (swap) and reloads, and is unmounted when the plugin is unloaded.
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { isMountPoint } from "../../src/container/host-mounts.js";
import type { ContainerEvent, ContainerPluginError } from "../../src/container/index.js";
import { type Env, installPlugin, postJson, repoRoot, setup, skipReason } from "./helpers.js";

const skip = skipReason();
export const hostileFixture = join(repoRoot, "packages/daemon/test/container/fixtures/hostile");

async function post<T>(url: string): Promise<T> {
  const r = await postJson<T>(url);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

type Exec = { dir: string; copy: string; exec: string };
type Fill = { dir: string; written: number; error: string };
type Write = { write: string; mode: string; text: string; uid: number };

async function until(pred: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("container mounts: noexec everywhere writable, bounded socket dir, data quota (real podman)", { skip }, () => {
  let env: Env;
  before(async () => {
    env = await setup({ restartBudget: { max: 5, windowMs: 60_000 }, healthIntervalMs: 1000, healthFailures: 3 });
    await env.containers.load(
      installPlugin(env.home, "mx", hostileFixture, (m) => {
        m.container = { ...m.container, writable_data: true, data_quota_mb: 16 };
      }),
    );
  });
  after(async () => {
    await env?.close();
  });

  it("no writable path is executable: a dropped ELF does not run from /tmp, /var/tmp, /run/plugin, /dev/shm, /data", async () => {
    for (const dir of ["/tmp", "/var/tmp", "/run/plugin", "/dev/shm", "/data"]) {
      const r = await post<Exec>(`${env.base}/plugin/mx/api/probe/exec?dir=${dir}`);
      assert.equal(r.copy, "ok", `${dir} is writable by the plugin (so the exec check means something)`);
      assert.equal(r.exec, "EACCES", `${dir}: ${JSON.stringify(r)}`);
    }
    // /run (outside the socket dir) and / are not writable at all.
    for (const dir of ["/run", "/"]) {
      const r = await post<Exec>(`${env.base}/plugin/mx/api/probe/exec?dir=${dir}`);
      assert.ok(["EACCES", "EROFS"].includes(r.copy), `${dir}: ${JSON.stringify(r)}`);
    }
  });

  it("/tmp is writable by the plugin's uid (1777 tmpfs)", async () => {
    const r = await post<Write>(`${env.base}/plugin/mx/api/probe/write?path=/tmp/note&text=hi&stat=/tmp`);
    assert.equal(r.write, "ok");
    assert.equal(r.text, "hi");
    assert.equal(r.mode, "1777");
    assert.notEqual(r.uid, 0);
  });

  it("the socket dir is a 1 MiB tmpfs on the host (noexec, owned by the plugin's uid): full at ~1 MiB", async () => {
    const loaded = env.containers.get("mx")!;
    const dir = loaded.socketPath.slice(0, loaded.socketPath.lastIndexOf("/"));
    assert.ok(isMountPoint(dir), "the socket dir is its own mount");
    const st = statSync(dir);
    assert.equal(st.uid, loaded.uid);
    assert.equal(st.mode & 0o777, 0o700);
    const mount = readFileSync("/proc/self/mountinfo", "utf8")
      .split("\n")
      .find((l) => l.split(" ")[4] === dir)!;
    assert.match(mount, /\bnoexec\b/);
    assert.match(mount, / tmpfs /);
    const r = await post<Fill>(`${env.base}/plugin/mx/api/probe/fill?dir=/run/plugin&mb=8&keep=0`);
    assert.equal(r.error, "ENOSPC");
    assert.ok(r.written <= 1024 * 1024 && r.written >= 512 * 1024, `wrote ${r.written} bytes`);
    // Still serving after the fill (the socket needs no space).
    assert.equal((await request(`${env.base}/plugin/mx/api/whoami`)).statusCode, 200);
  });

  it("data quota: ENOSPC past container.data_quota_mb inside the container, the host image stays within it", async () => {
    const image = join(env.home, "plugins", "mx", "data.img");
    const r = await post<Fill>(`${env.base}/plugin/mx/api/probe/fill?dir=/data&mb=64&keep=0`);
    assert.equal(r.error, "ENOSPC");
    assert.ok(r.written > 8 * 1024 * 1024 && r.written <= 16 * 1024 * 1024, `wrote ${r.written} bytes`);
    const st = statSync(image);
    assert.equal(st.size, 16 * 1024 * 1024);
    assert.ok(st.blocks * 512 <= 16 * 1024 * 1024, "the image never takes more host disk than the quota");
    assert.equal(st.mode & 0o777, 0o600);
  });

  it("data survives a crash restart, an upgrade (swap) and a reload; unloading unmounts the image", async () => {
    const base = `${env.base}/plugin/mx/api`;
    assert.equal((await post<Write>(`${base}/probe/write?path=/data/keep&text=v1`)).write, "ok");
    // Crash: the container exits, ContainerPlugins restarts it (fresh socket dir, verified again).
    const seen = env.events.length;
    await postJson(`${base}/attack?kind=rebind`);
    await until(() => env.events.slice(seen).some((e: ContainerEvent) => e.type === "restarted"), 40_000);
    assert.equal((await post<Write>(`${base}/probe/write?path=/data/after-restart`)).write, "ok");
    assert.equal((await post<Write>(`${base}/probe/write?path=/data/keep&text=v1`)).text, "v1");
    // The upgrade asks for a larger quota: the image (in use by the old container) grows at the next load.
    const image = join(env.home, "plugins", "mx", "data.img");
    const spec = installPlugin(env.home, "mx", hostileFixture, (m) => {
      m.version = "0.2.0";
      m.container = { ...m.container, writable_data: true, data_quota_mb: 24 };
    });
    await env.containers.swap("mx", spec);
    const afterSwap = await post<Write>(`${base}/probe/write?path=/data/keep&text=v1`);
    assert.equal(afterSwap.text, "v1");
    assert.equal(statSync(image).size, 16 * 1024 * 1024);
    await env.containers.unload("mx");
    const data = join(env.home, "plugins", "mx", "data");
    assert.equal(isMountPoint(data), false, "unloaded: the image is not mounted");
    assert.equal(existsSync(join(data, "keep")), false, "nothing of the image lands on the host dir");
    await env.containers.load(spec);
    const again = await post<Write>(`${base}/probe/write?path=/data/keep&text=v1`);
    assert.equal(again.text, "v1");
    assert.ok(isMountPoint(data));
    assert.equal(statSync(image).size, 24 * 1024 * 1024);
    const grown = await post<Fill>(`${base}/probe/fill?dir=/data&mb=64&keep=0`);
    assert.equal(grown.error, "ENOSPC");
    assert.ok(grown.written > 16 * 1024 * 1024 && grown.written <= 24 * 1024 * 1024, `wrote ${grown.written} bytes`);
    assert.ok(statSync(image).blocks * 512 <= 24 * 1024 * 1024);
  });

  it("a plain data dir from before quotas is copied into the new image once and set aside", async () => {
    const spec = installPlugin(env.home, "mmig", hostileFixture, (m) => {
      m.container = { ...m.container, writable_data: true, data_quota_mb: 8 };
    });
    mkdirSync(join(spec.dir, "data"), { recursive: true });
    writeFileSync(join(spec.dir, "data", "old.txt"), "from before");
    await env.containers.load(spec);
    const r = await request(`${env.base}/plugin/mmig/api/probe/read?path=/data/old.txt`);
    assert.deepEqual(await r.body.json(), { read: "ok", text: "from before" });
    assert.ok(isMountPoint(join(spec.dir, "data")));
    assert.equal(readFileSync(join(spec.dir, "data.pre-quota", "old.txt"), "utf8"), "from before");
    await env.containers.unload("mmig");
  });

  it("boot sweep after a daemon crash: the socket tmpfs and data image left mounted are unmounted", async () => {
    const spec = installPlugin(env.home, "mcrash", hostileFixture, (m) => {
      m.container = { ...m.container, writable_data: true, data_quota_mb: 8 };
    });
    // An instance of its own: the sweep must not touch the other tests' containers.
    const instanceId = "0000feed-crash-test";
    const crashed = env.newContainers({ instanceId });
    const loaded = await crashed.load(spec);
    await crashed.close({ leaveRunning: true }); // what a kill -9 leaves: container, mounts
    const socketDir = loaded.socketPath.slice(0, loaded.socketPath.lastIndexOf("/"));
    const data = join(spec.dir, "data");
    assert.ok(isMountPoint(socketDir) && isMountPoint(data));
    const next = env.newContainers({ instanceId });
    const removed = await next.sweep(); // the plugin is not wanted any more
    assert.deepEqual(removed, [loaded.containerName]);
    assert.equal(isMountPoint(socketDir), false);
    assert.equal(existsSync(socketDir), false);
    assert.equal(isMountPoint(data), false);
    assert.ok(existsSync(`${data}.img`), "the data image itself is kept (only a purge deletes it)");
  });

  it("an executable /tmp needs the manifest AND the operator; a quota above the operator's cap is refused", async () => {
    const spec = installPlugin(env.home, "mexec", hostileFixture, (m) => {
      m.container = { ...m.container, exec_tmp: true };
    });
    await assert.rejects(env.containers.load(spec), (err: ContainerPluginError) => err.code === "not_allowed");
    const big = installPlugin(env.home, "mbig", hostileFixture, (m) => {
      m.container = { ...m.container, writable_data: true, data_quota_mb: 4096 };
    });
    await assert.rejects(env.containers.load(big), (err: ContainerPluginError) => err.code === "not_allowed");
    const permissive = env.newContainers({ allowExecTmp: true });
    await permissive.load(spec);
    const tmp = await post<Exec>(`${env.base}/plugin/mexec/api/probe/exec?dir=/tmp`);
    assert.deepEqual([tmp.copy, tmp.exec], ["ok", "ran"], "with both, /tmp runs what the plugin drops");
    const varTmp = await post<Exec>(`${env.base}/plugin/mexec/api/probe/exec?dir=/var/tmp`);
    assert.equal(varTmp.exec, "EACCES", "only /tmp is opened up");
    await permissive.unload("mexec");
  });
});
