/**
 * A slow pull (a layer of random bytes served through a proxy that drips the registry's bytes on loopback):
 * `cancel` in the middle leaves no plugin, no image, no package and stops the download; a daemon killed with -9 in the
 * middle of a pull resumes it at boot (the plugin ends LOADED, never stuck PULLING); the admin page (headless
 * Chromium) installs from an image, shows the pull's progress bar live and cancels it with its button.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Daemon } from "../../src/daemon.js";
import { launchChromium } from "../admin/chromium.js";
import { spawnDaemon, unixRequest, until } from "../lifecycle/helpers.js";
import { removeHomeContainers, skipReason } from "./helpers.js";
import {
  buildAndPush,
  type DripProxy,
  ensureBaseImage,
  imageManifest,
  localImageExists,
  removeLocalImages,
  startContainerDaemon,
  startDripProxy,
  startRegistry,
  type TestRegistry,
} from "./registry-helpers.js";

const skip = skipReason();
const NAME = "oci-slow";
const RATE = 256 * 1024; // bytes per second through the proxy: the 8 MiB layer takes ~30 s

function api(socketPath: string, method: string, path: string, body?: unknown) {
  return unixRequest(
    socketPath,
    method,
    path,
    body === undefined ? undefined : JSON.stringify(body),
    body === undefined ? {} : { "content-type": "application/json" },
  );
}

async function waitFlag(socketPath: string, flag: string): Promise<void> {
  await until(
    async () => (await api(socketPath, "GET", `/admin/api/plugins/${NAME}`)).json().flags?.includes(flag),
    20_000,
    `flag ${flag}`,
  );
}

describe("slow pulls: cancel, kill -9 (real registry behind a drip proxy)", { skip, timeout: 240_000 }, () => {
  let registry: TestRegistry;
  let proxy: DripProxy;
  let work: string;
  let digest: string;
  let ref: string;

  before(async () => {
    await ensureBaseImage();
    registry = await startRegistry();
    work = mkdtempSync(join(tmpdir(), "hct-oci-slow-"));
    [digest] = await Promise.all([
      buildAndPush(`${registry.host}/hecate-test/slow:1`, "1.0.0", imageManifest(NAME, "1.0.0"), { padMb: 8 }),
      buildAndPush(`${registry.host}/hecate-test/slow:0`, "0.9.0", imageManifest(NAME, "0.9.0")),
    ]);
    proxy = await startDripProxy(registry.port, RATE);
    ref = `oci://127.0.0.1:${proxy.port}/hecate-test/slow:1`;
  });

  after(async () => {
    await proxy?.close();
    removeLocalImages(`127.0.0.1:${proxy?.port}`);
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("cancel in the middle of a pull: cancelled event, no plugin, no image, no package, the download stops", async () => {
    proxy.setRate(RATE);
    const home = join(work, "home-cancel");
    let daemon: Daemon | undefined;
    try {
      daemon = await startContainerDaemon(home);
      const s = daemon.socketPath;
      const r = await api(s, "POST", "/admin/api/plugins?wait=none", { oci: ref });
      assert.equal(r.status, 202, r.body);
      await waitFlag(s, "PULLING");
      const pulling = (await api(s, "GET", `/admin/api/plugins/${NAME}`)).json();
      assert.equal(pulling.status, "pulling");
      assert.equal(pulling.pull.digest, digest);
      const start = proxy.relayed();
      await until(() => proxy.relayed() > start + 512 * 1024, 20_000, "half a MiB of the layer");
      const c = await api(s, "POST", `/admin/api/plugins/${NAME}/cancel`);
      assert.equal(c.status, 200, c.body);
      assert.equal(c.json().status, "removed");
      assert.equal(c.json().pull, null);
      // the download stops (the pull's connection to the registry is closed)
      await new Promise((r) => setTimeout(r, 1000));
      const stopped = proxy.relayed();
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(proxy.relayed() - stopped < 64 * 1024, `no more bytes after cancel (${proxy.relayed() - stopped})`);
      const types = (await api(s, "GET", `/admin/api/plugins/${NAME}/events`))
        .json()
        .events.map((e: { type: string }) => e.type);
      assert.deepEqual(types.slice(0, 2), ["plugin_installed_v1", "oci_pull_started_v1"]);
      assert.equal(types.at(-1), "oci_pull_cancelled_v1");
      assert.equal(localImageExists(`127.0.0.1:${proxy.port}/hecate-test/slow@${digest}`), false);
      assert.equal(existsSync(join(home, "plugins", NAME, "package")), false);
      const page = await fetch(`${daemon.url}/plugin/${NAME}/api/x`);
      assert.notEqual(page.status, 200);
      await page.arrayBuffer();
      // nothing to cancel any more: the plugin is gone
      const gone = await api(s, "POST", `/admin/api/plugins/${NAME}/cancel`);
      assert.equal(gone.status, 404, gone.body);
      assert.equal(gone.json().error.code, "plugin_not_found");
      // it installs again afterwards (unthrottled); a loaded plugin has no pull to cancel
      proxy.setRate(0);
      const re = await api(s, "POST", "/admin/api/plugins?wait=loaded", { oci: ref });
      assert.equal(re.status, 201, re.body);
      assert.equal(re.json().status, "loaded");
      const again = await api(s, "POST", `/admin/api/plugins/${NAME}/cancel`);
      assert.equal(again.status, 409, again.body);
      assert.equal(again.json().error.code, "not_pulling");
      assert.match(again.json().error.message, /is not pulling an image \(it is loaded\)/);
    } finally {
      await daemon?.close();
      await removeHomeContainers(home);
      removeLocalImages(`127.0.0.1:${proxy.port}`);
    }
  });

  it("cancel during an upgrade: 409 pull_cancelled for the upgrade, the running version keeps serving", async () => {
    proxy.setRate(0);
    const home = join(work, "home-upgrade");
    let daemon: Daemon | undefined;
    try {
      daemon = await startContainerDaemon(home);
      const s = daemon.socketPath;
      const v0 = await api(s, "POST", "/admin/api/plugins?wait=loaded", { oci: ref.replace(/:1$/, ":0") });
      assert.equal(v0.status, 201, v0.body);
      proxy.setRate(RATE);
      const upgrade = api(s, "POST", `/admin/api/plugins/${NAME}/upgrade`, { oci: ref });
      await waitFlag(s, "PULLING");
      const start = proxy.relayed();
      await until(() => proxy.relayed() > start + 256 * 1024, 20_000, "a quarter MiB of the new layer");
      const c = await api(s, "POST", `/admin/api/plugins/${NAME}/cancel`);
      assert.equal(c.status, 200, c.body);
      assert.equal(c.json().status, "loaded");
      assert.equal(c.json().version, "0.9.0");
      const u = await upgrade;
      assert.equal(u.status, 409, u.body);
      assert.equal(u.json().error.code, "pull_cancelled");
      const hello = await fetch(`${daemon.url}/plugin/${NAME}/api/x`);
      assert.equal(hello.status, 200);
      assert.equal(((await hello.json()) as { version: string }).version, "0.9.0");
      assert.ok((await api(s, "GET", `/admin/api/plugins/${NAME}`)).json().flags.includes("RUNNING"));
    } finally {
      await daemon?.close();
      await removeHomeContainers(home);
      removeLocalImages(`127.0.0.1:${proxy.port}`);
    }
  });

  it("admin page: install from an image, the pull's progress bar goes live, its Cancel button ends the pull", async () => {
    proxy.setRate(RATE);
    const home = join(work, "home-ui");
    let daemon: Daemon | undefined;
    const browser = await launchChromium();
    try {
      daemon = await startContainerDaemon(home);
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on("pageerror", (e) => pageErrors.push(e.message));
      await page.goto(`${daemon.adminUrl}/admin/login?token=${encodeURIComponent(daemon.token)}`);
      await page.waitForSelector('#connection[data-state="open"]');
      await page.fill("#oci-ref", ref);
      await page.click('#oci-form button[type="submit"]');
      const row = `tr[data-plugin="${NAME}"]`;
      await page.waitForSelector(
        `${row} [data-field="status"][data-status="pulling"] progress[data-field="pull-progress"]`,
      );
      // the bar moves with the pull's progress events (bytes of the dripped layer)
      const bar = `${row} progress[data-field="pull-progress"]`;
      await page.waitForFunction(`(document.querySelector(${JSON.stringify(bar)})?.value ?? 0) > 64 * 1024`);
      const label = (await page.textContent(`${row} [data-field="pull-label"]`)) ?? "";
      assert.match(label, /^0\/3 layers · (\d+\.\d) MiB\/(\d+\.\d) MiB$/);
      assert.match((await page.textContent(`${row} [data-field="flags"]`)) ?? "", /PULLING/);
      await page.click(`${row} button[data-action="cancel"]`);
      await page.waitForSelector(row, { state: "detached" });
      await page.waitForSelector("#upload-status:has-text('pull cancelled')");
      const view = (await api(daemon.socketPath, "GET", `/admin/api/plugins/${NAME}`)).json();
      assert.equal(view.status, "removed");
      assert.deepEqual(pageErrors, []);
    } finally {
      await browser.close();
      await daemon?.close();
      await removeHomeContainers(home);
      removeLocalImages(`127.0.0.1:${proxy.port}`);
    }
  });

  it("kill -9 in the middle of a pull: the restarted daemon resumes it; the plugin ends LOADED, not PULLING", async () => {
    proxy.setRate(RATE);
    const home = join(work, "home-kill");
    const first = spawnDaemon(home, { HECATE_CONTAINERS: "1" });
    let second: ReturnType<typeof spawnDaemon> | undefined;
    try {
      await first.url;
      const r = await api(first.socketPath, "POST", "/admin/api/plugins?wait=none", { oci: ref });
      assert.equal(r.status, 202, r.body);
      await waitFlag(first.socketPath, "PULLING");
      const start = proxy.relayed();
      await until(() => proxy.relayed() > start + 256 * 1024, 20_000, "a quarter MiB of the layer");
      first.child.kill("SIGKILL");
      await first.exited;
      proxy.setRate(0);
      second = spawnDaemon(home, { HECATE_CONTAINERS: "1" });
      await second.url;
      // RUNNING is recorded by a command of its own after the load (start_plugin_execution_v1): wait for both.
      const view = await until(
        async () => {
          const v = (await api(second!.socketPath, "GET", `/admin/api/plugins/${NAME}`)).json();
          return v.status === "loaded" && v.flags.includes("RUNNING") ? v : null;
        },
        60_000,
        "the resumed pull to load the plugin and start its container",
      );
      assert.ok(!view.flags.includes("PULLING"));
      const types = (await api(second.socketPath, "GET", `/admin/api/plugins/${NAME}/events`))
        .json()
        .events.map((e: { type: string }) => e.type);
      assert.equal(types.filter((t: string) => t === "oci_pull_started_v1").length, 1);
      assert.equal(types.filter((t: string) => t === "oci_pull_completed_v1").length, 1);
      const hello = await fetch(`${await second.url}/plugin/${NAME}/api/x`);
      assert.equal(hello.status, 200);
      assert.equal(((await hello.json()) as { version: string }).version, "1.0.0");
    } finally {
      for (const c of [first, second])
        if (c && c.child.exitCode === null && c.child.signalCode === null) {
          c.child.kill("SIGTERM");
          await c.exited;
        }
      await removeHomeContainers(home);
    }
  });
});
