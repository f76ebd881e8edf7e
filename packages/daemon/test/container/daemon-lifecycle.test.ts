/**
 * Container plugins through the daemon's event-sourced lifecycle, end to end with real Podman: a packed container
 * plugin installed over the admin API -> LOADED -> its API answers through the proxy -> deactivate (container gone)
 * -> activate -> remove; and a daemon killed with -9 while a container plugin runs: the restarted daemon takes the
 * container over (or replaces it), removes containers of this instance nobody wants, and leaves nothing behind.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packPlugin } from "@hecate/package";
import { LABEL_INSTANCE } from "../../src/container/container-plugins.js";
import { mountsUnder } from "../../src/container/host-mounts.js";
import { nodeBaseImageRef, PodmanClient } from "../../src/container/index.js";
import { buildPythonImageArchive } from "../../src/container/python-image.js";
import { startDaemon } from "../../src/daemon.js";
import { type ChildDaemon, spawnDaemon, unixRequest, until } from "../lifecycle/helpers.js";
import { echoExample, repoRoot, skipReason } from "./helpers.js";

const skip = skipReason();
const NAME = "container-echo";

/** Packs a copy of examples/container-echo (packPlugin writes hecate-files.json into the dir it packs). */
async function packEcho(work: string, version = "0.1.0"): Promise<string> {
  const src = mkdtempSync(join(work, "src-"));
  cpSync(echoExample, src, { recursive: true });
  const manifestFile = join(src, "manifest.json");
  writeFileSync(manifestFile, JSON.stringify({ ...JSON.parse(readFileSync(manifestFile, "utf8")), version }));
  const out = join(work, `${NAME}-${version}.tar.gz`);
  await packPlugin(src, out);
  return out;
}

function instanceId(home: string): string {
  return readFileSync(join(home, "instance-id"), "utf8").trim();
}

/** Every container of a daemon instance, also stopped ones (what `podman ps -a --filter label=...` shows). */
async function containersOf(podman: PodmanClient, home: string) {
  return podman.listContainers(`${LABEL_INSTANCE}=${instanceId(home)}`);
}

/** `podman ps -a --filter label=hecate.instance=<id>` through the CLI (works without the API service). */
function psAll(home: string): string {
  return execFileSync("podman", ["ps", "-a", "-q", "--filter", `label=${LABEL_INSTANCE}=${instanceId(home)}`], {
    encoding: "utf8",
  }).trim();
}

/**
 * Runs `fn` with a starter of daemon child processes (main.js, containers on) on `home`; afterwards nothing of this
 * home survives, even when `fn` failed half-way: children killed, containers removed, the podman service stopped.
 */
async function withChildDaemons(
  home: string,
  fn: (start: (env?: Record<string, string>) => ChildDaemon, podman: PodmanClient) => Promise<void>,
): Promise<void> {
  const children: ChildDaemon[] = [];
  const start = (env: Record<string, string> = {}) => {
    const c = spawnDaemon(home, { HECATE_CONTAINERS: "1", ...env });
    children.push(c);
    return c;
  };
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  try {
    await fn(start, podman);
  } finally {
    for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    const ids = psAll(home);
    if (ids) execFileSync("podman", ["rm", "-f", "--ignore", ...ids.split("\n")], { stdio: "ignore" });
    const cleanup = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
    await cleanup.ensureService().catch(() => {}); // adopts a service a killed daemon left, to stop it
    await cleanup.stopService();
    await cleanup.close();
    await podman.close();
  }
}

async function install(socketPath: string, archive: string, path = "/admin/api/plugins?wait=loaded", status = 201) {
  const r = await unixRequest(socketPath, "POST", path, readFileSync(archive), { "content-type": "application/gzip" });
  assert.equal(r.status, status, r.body);
  return r.json();
}

describe("container plugins in the daemon lifecycle (real podman)", { skip, timeout: 180_000 }, () => {
  let work: string;
  let archive: string;
  before(async () => {
    work = mkdtempSync(join(tmpdir(), "hct-dl-"));
    archive = await packEcho(work);
  });
  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it("install -> LOADED -> API through the proxy -> deactivate (container gone) -> activate -> upgrade -> remove", async () => {
    const home = join(work, "home-e2e");
    const daemon = await startDaemon({
      home,
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
    const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
    try {
      const view = await install(daemon.socketPath, archive);
      assert.equal(view.status, "loaded");
      assert.equal(view.type, "container");

      const hello = await fetch(`${daemon.url}/plugin/${NAME}/api/hello`);
      assert.equal(hello.status, 200);
      const body = (await hello.json()) as { hello: string; uid: number };
      assert.equal(body.hello, "from a container");
      const [c] = await containersOf(podman, home);
      assert.equal(c?.State, "running");
      assert.equal(c.Labels["hecate.plugin"], NAME);
      // The package is the read-only /plugin of the container; static assets are served by the daemon.
      assert.equal((await fetch(`${daemon.url}/plugin/${NAME}/`)).status, 200);

      // What the container prints lands in the plugin's log of the admin API.
      await fetch(`${daemon.url}/plugin/${NAME}/api/log?msg=hello-from-stdout`, { method: "POST" }).then((r) =>
        r.text(),
      );
      assert.equal((await fetch(`${daemon.url}/plugin/${NAME}/api/boom`)).status, 500);
      const logs = await until(
        async () => {
          const ls = (await unixRequest(daemon.socketPath, "GET", `/admin/api/plugins/${NAME}/logs?tail=100`)).json()
            .logs as { level: string; msg: string; plugin: string }[];
          return ls.some((l) => /boom on purpose/.test(l.msg)) && ls.length >= 3 ? ls : undefined;
        },
        10_000,
        "container output in the plugin log",
      );
      assert.ok(logs?.some((l) => l.level === "info" && l.msg === "hello-from-stdout" && l.plugin === NAME));
      assert.ok(logs?.some((l) => l.level === "error" && l.msg === "to stderr: hello-from-stdout"));
      assert.ok(
        logs?.some((l) => l.level === "error" && /boom on purpose/.test(l.msg)),
        JSON.stringify(logs),
      );

      const off = await unixRequest(daemon.socketPath, "POST", `/admin/api/plugins/${NAME}/deactivate`);
      assert.equal(off.status, 200, off.body);
      assert.equal(off.json().status, "deactivated");
      assert.deepEqual(await containersOf(podman, home), [], "deactivate removes the container");
      assert.equal((await fetch(`${daemon.url}/plugin/${NAME}/api/hello`)).status, 503); // plugin_not_active

      const on = await unixRequest(daemon.socketPath, "POST", `/admin/api/plugins/${NAME}/activate`);
      assert.equal(on.status, 200, on.body);
      assert.equal(on.json().status, "loaded");
      assert.equal((await fetch(`${daemon.url}/plugin/${NAME}/api/hello`)).status, 200);

      // Upgrade: a new container (next generation) is healthy before the routes move; the old one is removed.
      const v2 = await install(
        daemon.socketPath,
        await packEcho(work, "0.2.0"),
        `/admin/api/plugins/${NAME}/upgrade`,
        200,
      );
      assert.equal(v2.version, "0.2.0");
      assert.equal(v2.status, "loaded");
      assert.equal((await fetch(`${daemon.url}/plugin/${NAME}/api/hello`)).status, 200);
      const afterUpgrade = await containersOf(podman, home);
      assert.equal(afterUpgrade.length, 1, "only the new container remains");
      assert.notEqual(afterUpgrade[0].Id, c.Id);

      const rm = await unixRequest(daemon.socketPath, "DELETE", `/admin/api/plugins/${NAME}?purge=1`);
      assert.equal(rm.status, 200, rm.body);
      assert.deepEqual(await containersOf(podman, home), [], "remove leaves no container");
      const events = (await unixRequest(daemon.socketPath, "GET", `/admin/api/plugins/${NAME}/events`)).json()
        .events as { type: string }[];
      const types = events.map((e) => e.type);
      for (const t of ["plugin_installed_v1", "plugin_activated_v1", "plugin_deactivated_v1", "plugin_removed_v1"])
        assert.ok(types.includes(t), `${t} in ${types.join(",")}`);
    } finally {
      await daemon.close();
      assert.equal(await podman.ping(), false, "the daemon stopped its podman service");
      assert.equal(psAll(home), "", "no container left");
      await podman.close();
    }
  });

  it("a non-Node plugin shipping its own image (OCI archive, Python) goes through the same lifecycle", async () => {
    const image = "localhost/hecate-test-python-lc:1";
    const src = mkdtempSync(join(work, "py-"));
    cpSync(join(repoRoot, "examples/container-python"), src, { recursive: true });
    const manifestFile = join(src, "manifest.json");
    const manifest = JSON.parse(readFileSync(manifestFile, "utf8"));
    writeFileSync(manifestFile, JSON.stringify({ ...manifest, container: { ...manifest.container, image } }));
    await buildPythonImageArchive(join(src, manifest.container.image_archive), image);
    execFileSync("podman", ["rmi", "-f", image], { stdio: "ignore" }); // the install must load it from the package
    const pyArchive = join(work, "container-python.tar.gz");
    await packPlugin(src, pyArchive);
    const home = join(work, "home-py");
    const daemon = await startDaemon({
      home,
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
    try {
      const view = await install(daemon.socketPath, pyArchive);
      assert.equal(view.status, "loaded", JSON.stringify(view));
      const r = await fetch(`${daemon.url}/plugin/container-python/api/hello`);
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { hello: string }).hello, "from python");
      const rm = await unixRequest(daemon.socketPath, "DELETE", "/admin/api/plugins/container-python?purge=1");
      assert.equal(rm.status, 200, rm.body);
      assert.equal(psAll(home), "");
    } finally {
      await daemon.close();
      assert.equal(psAll(home), "", "no container left");
      execFileSync("podman", ["rmi", "-f", image], { stdio: "ignore" });
    }
  });

  it("container crashes are lifecycle events: plugin_crashed_v1 per crash, past the budget plugin_disabled_v1", async () => {
    const home = join(work, "home-crash");
    const daemon = await startDaemon({
      home,
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
    const events = async () =>
      (await unixRequest(daemon.socketPath, "GET", `/admin/api/plugins/${NAME}/events`)).json().events as {
        type: string;
        data: { reason?: string };
      }[];
    const hello = () => fetch(`${daemon.url}/plugin/${NAME}/api/hello`).then((r) => r.status);
    try {
      await install(daemon.socketPath, archive);
      // Restart budget of ContainerPlugins: 3 restarts, the 4th crash disables the plugin.
      for (let crash = 1; crash <= 4; crash++) {
        await fetch(`${daemon.url}/plugin/${NAME}/api/exit?code=3`, { method: "POST" }).then((r) => r.arrayBuffer());
        const crashed = await until(
          async () => {
            const es = (await events()).filter((e) => e.type === "plugin_crashed_v1");
            return es.length === crash ? es : undefined;
          },
          20_000,
          `crash ${crash} recorded`,
        );
        assert.match(crashed?.[crash - 1]?.data.reason ?? "", /exit/);
        if (crash < 4) await until(async () => (await hello()) === 200, 20_000, `restart ${crash}`);
      }
      const disabled = await until(
        async () => {
          const v = (await unixRequest(daemon.socketPath, "GET", `/admin/api/plugins/${NAME}`)).json();
          return v.status === "failed" ? v : undefined;
        },
        20_000,
        "plugin failed",
      );
      assert.equal(disabled.lastError.code, "disabled");
      assert.ok((await events()).some((e) => e.type === "plugin_disabled_v1"));
      assert.equal(await hello(), 503); // disabled: plugin_not_active
      assert.equal(psAll(home), "", "the disabled plugin's container is gone");

      // The operator brings it back: deactivate + activate -> a fresh container.
      assert.equal((await unixRequest(daemon.socketPath, "POST", `/admin/api/plugins/${NAME}/deactivate`)).status, 200);
      const on = await unixRequest(daemon.socketPath, "POST", `/admin/api/plugins/${NAME}/activate`);
      assert.equal(on.json().status, "loaded", on.body);
      assert.equal(await hello(), 200);
    } finally {
      await daemon.close();
      assert.equal(psAll(home), "", "no container left");
    }
  });

  it("kill -9 with a running container plugin -> restart -> container reconciled, orphans removed, none left", async () => {
    const home = join(work, "home-kill");
    await withChildDaemons(home, async (start, podman) => {
      const first = start();
      const firstUrl = await first.url;
      await install(first.socketPath, archive);
      assert.equal((await fetch(`${firstUrl}/plugin/${NAME}/api/hello`)).status, 200);
      const [before1] = await containersOf(podman, home);
      assert.ok(before1);

      first.child.kill("SIGKILL");
      await first.exited;
      // The container outlives the daemon; an orphan of this instance (crash between create and start of some
      // other plugin's container) must go at the next boot, a foreign instance's container must stay.
      assert.equal((await podman.inspectContainer(before1.Id))?.State.Running, true);
      const orphan = await podman.createContainer({
        name: `hecate-orphan-${Date.now()}`,
        Image: nodeBaseImageRef(),
        Labels: { [LABEL_INSTANCE]: instanceId(home), "hecate.plugin": "ghost", "hecate.generation": "1" },
        HostConfig: { NetworkMode: "none" },
      });
      const foreign = await podman.createContainer({
        name: `hecate-foreign-${Date.now()}`,
        Image: nodeBaseImageRef(),
        Labels: { [LABEL_INSTANCE]: "another-daemon", "hecate.plugin": NAME },
        HostConfig: { NetworkMode: "none" },
      });
      try {
        const second = start();
        const url = await second.url;
        assert.equal((await unixRequest(second.socketPath, "GET", "/ready")).status, 200);
        const v = (await unixRequest(second.socketPath, "GET", `/admin/api/plugins/${NAME}`)).json();
        assert.equal(v.status, "loaded", JSON.stringify(v));
        assert.equal((await fetch(`${url}/plugin/${NAME}/api/hello`)).status, 200);
        const now = await containersOf(podman, home);
        assert.deepEqual(
          now.map((c) => c.Id),
          [before1.Id],
          "the healthy container of the same spec was adopted, not restarted; the orphan is gone",
        );
        assert.ok(await podman.inspectContainer(foreign), "another instance's container untouched");
        // The adopted container's socket tmpfs outlived the killed daemon and is the one in use (verified again).
        assert.deepEqual(mountsUnder(home), [join(home, "run", "containers", `${NAME}.1`)]);

        second.child.kill("SIGTERM");
        assert.equal((await second.exited).code, 0, second.output());
        assert.equal(await podman.ping(), false, "the adopted podman service was stopped too");
        assert.equal(psAll(home), "", "graceful stop leaves no container");
        assert.deepEqual(mountsUnder(home), [], "nor a mount");
      } finally {
        // Through the CLI: the daemon may have stopped the API service already.
        execFileSync("podman", ["rm", "-f", "--ignore", foreign, orphan], { stdio: "ignore" });
      }
    });
  });

  it("kill -9 right after plugin_deactivated_v1 (container not yet removed) -> restart removes it", async () => {
    const home = join(work, "home-deact");
    await withChildDaemons(home, async (start, podman) => {
      const first = start({ HECATE_TEST_CRASH_AFTER: "plugin_deactivated_v1" });
      await first.url;
      await install(first.socketPath, archive);
      const [running] = await containersOf(podman, home);
      assert.ok(running);
      await unixRequest(first.socketPath, "POST", `/admin/api/plugins/${NAME}/deactivate`).catch(() => {});
      assert.equal((await first.exited).signal, "SIGKILL", first.output());
      // The container may be running still or already stopping: the plugin host can have taken the unload request
      // in the moment before its supervisor died. Either way the restart must remove it.

      const second = start();
      await second.url;
      assert.equal((await unixRequest(second.socketPath, "GET", "/ready")).status, 200);
      const v = (await unixRequest(second.socketPath, "GET", `/admin/api/plugins/${NAME}`)).json();
      assert.equal(v.status, "deactivated", JSON.stringify(v));
      assert.equal(psAll(home), "", "the deactivated plugin's container was removed at boot");
      assert.deepEqual(mountsUnder(home), [], "and its socket tmpfs, left mounted by the crash, unmounted");
      second.child.kill("SIGTERM");
      assert.equal((await second.exited).code, 0, second.output());
      assert.equal(await podman.ping(), false, "podman service stopped");
    });
  });
});
