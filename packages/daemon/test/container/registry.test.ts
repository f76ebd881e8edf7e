/**
 * Container plugins installed from a real OCI registry (docker-registry on 127.0.0.1, images built FROM the local
 * Node base image and pushed with podman): install by tag (events in order over SSE, digest recorded, flags), upgrade
 * to a new tag with zero failed requests under load, install by digest, a wrong digest refused, a registry that is
 * down refused with a clear error and event and nothing left behind, an image without a plugin manifest, and
 * HECATE_REQUIRE_DIGEST=1.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { Daemon } from "../../src/daemon.js";
import { unixRequest } from "../lifecycle/helpers.js";
import { removeHomeContainers, skipReason } from "./helpers.js";
import {
  buildAndPush,
  ensureBaseImage,
  followEvents,
  freePort,
  imageManifest,
  localImageExists,
  removeLocalImages,
  startContainerDaemon,
  startRegistry,
  type TestRegistry,
} from "./registry-helpers.js";

const skip = skipReason();
const NAME = "oci-echo";

describe("container plugins from an OCI registry (real registry, real podman)", { skip, timeout: 240_000 }, () => {
  let registry: TestRegistry;
  let work: string;
  let daemon: Daemon;
  const digests: Record<string, string> = {};
  const api = (method: string, path: string, body?: unknown) =>
    unixRequest(
      daemon.socketPath,
      method,
      path,
      body === undefined ? undefined : JSON.stringify(body),
      body === undefined ? {} : { "content-type": "application/json" },
    );

  before(async () => {
    await ensureBaseImage();
    registry = await startRegistry();
    work = mkdtempSync(join(tmpdir(), "hct-oci-"));
    const repo = `${registry.host}/hecate-test/echo`;
    [digests.v1, digests.v2] = await Promise.all([
      buildAndPush(`${repo}:1`, "1.0.0", imageManifest(NAME, "1.0.0")),
      buildAndPush(`${repo}:2`, "2.0.0", imageManifest(NAME, "2.0.0")),
      buildAndPush(`${registry.host}/hecate-test/nolabel:1`, "1.0.0", null),
    ]);
    daemon = await startContainerDaemon(join(work, "home"));
  });

  after(async () => {
    await daemon?.close();
    await removeHomeContainers(join(work, "home"));
    removeLocalImages(registry.host);
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("install by tag: resolved to its digest, pulled with progress events in order (SSE), loaded, RUNNING + CONFIRMED_UP", async () => {
    const sse = await followEvents(daemon.socketPath);
    const ref = `oci://${registry.host}/hecate-test/echo:1`;
    const r = await api("POST", "/admin/api/plugins?wait=loaded", { oci: ref });
    assert.equal(r.status, 201, r.body);
    const view = r.json();
    assert.equal(view.status, "loaded");
    assert.equal(view.version, "1.0.0");
    assert.equal(view.image, `${registry.host}/hecate-test/echo@${digests.v1}`);
    assert.equal(view.pull, null);
    const hello = await fetch(`${daemon.url}/plugin/${NAME}/api/hi`);
    assert.equal(hello.status, 200);
    assert.deepEqual(await hello.json(), { hello: "from an image", version: "1.0.0", path: "/hi" });

    const ev = await api("GET", `/admin/api/plugins/${NAME}/events`);
    const events = ev.json().events as { type: string; data: Record<string, unknown> }[];
    const types = events.map((e) => e.type);
    const want = [
      "plugin_installed_v1",
      "oci_pull_started_v1",
      "oci_pull_completed_v1",
      "plugin_package_extracted_v1",
      "plugin_activated_v1",
      "plugin_load_confirmed_v1",
      "plugin_execution_started_v1",
    ];
    let at = -1;
    for (const t of want) {
      const i = types.indexOf(t);
      assert.ok(i > at, `${t} after the previous steps in ${types.join(", ")}`);
      at = i;
    }
    const installed = events.find((e) => e.type === "plugin_installed_v1")!.data as { oci: { digest: string } };
    assert.equal(installed.oci.digest, digests.v1, "the resolved digest is recorded at install");
    const started = events.find((e) => e.type === "oci_pull_started_v1")!.data;
    assert.equal(started.digest, digests.v1);
    assert.equal(started.reference, ref);
    // progress between started and completed, layers counting up to the total
    const progress = events.filter((e) => e.type === "oci_pull_progressed_v1").map((e) => e.data);
    assert.ok(progress.length >= 1, "at least one progress event");
    const iStart = types.indexOf("oci_pull_started_v1");
    const iDone = types.indexOf("oci_pull_completed_v1");
    for (let i = 0; i < types.length; i++)
      if (types[i] === "oci_pull_progressed_v1") assert.ok(i > iStart && i < iDone, "progress inside the pull");
    const layers = progress.map((p) => p.layers_done as number);
    assert.deepEqual(
      layers,
      [...layers].sort((a, b) => a - b),
      "layers_done only grows",
    );
    assert.equal(layers.at(-1), started.layers, "every layer done at the end");
    assert.equal(progress.at(-1)!.bytes_done, started.bytes);

    // the same steps reached SSE clients, in the same order
    const live = sse.events.filter((e) => e.plugin === NAME).map((e) => e.type);
    assert.deepEqual(
      live.filter((t) => t.startsWith("oci_pull_")),
      types.filter((t) => t.startsWith("oci_pull_")),
    );
    sse.close();
    // the health watcher confirms the container up (a transition: recorded once)
    const confirmed = await waitForFlags(api, NAME, ["RUNNING", "CONFIRMED_UP"]);
    assert.ok(confirmed.includes("LOADED"));
  });

  it("the health watcher: a killed container -> confirm_container_down; restarted healthy -> confirm_container_up", async () => {
    const id = execFileSync("podman", ["ps", "-q", "--filter", `label=hecate.plugin=${NAME}`], {
      encoding: "utf8",
    }).trim();
    assert.ok(id, "the plugin's container runs");
    const before = (await api("GET", `/admin/api/plugins/${NAME}/events`)).json().events.length;
    execFileSync("podman", ["kill", id], { stdio: "ignore" });
    await waitForFlags(api, NAME, ["CONFIRMED_DOWN"]);
    const flags = await waitForFlags(api, NAME, ["CONFIRMED_UP", "RUNNING"]);
    assert.ok(!flags.includes("CONFIRMED_DOWN"));
    const events = (await api("GET", `/admin/api/plugins/${NAME}/events`)).json().events.slice(before);
    const types = events.map((e: { type: string }) => e.type);
    assert.deepEqual(
      types.filter((t: string) => t.startsWith("container_confirmed")),
      ["container_confirmed_down_v1", "container_confirmed_up_v1"],
      types.join(", "),
    );
    assert.match(events.find((e: { type: string }) => e.type === "container_confirmed_down_v1").data.reason, /crashed/);
    const hello = await fetch(`${daemon.url}/plugin/${NAME}/api/after-restart`);
    assert.equal(hello.status, 200);
    await hello.arrayBuffer();
  });

  it("upgrade to a new tag is a generation swap with 0 failed requests under load", async () => {
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const load = async () => {
      while (!stop) {
        try {
          const r = await fetch(`${daemon.url}/plugin/${NAME}/api/load`);
          const body = (await r.json()) as { version?: string };
          if (r.status === 200 && body.version) ok++;
          else failures.push(`${r.status} ${JSON.stringify(body)}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const workers = Array.from({ length: 8 }, load);
    await new Promise((r) => setTimeout(r, 300));
    const r = await api("POST", `/admin/api/plugins/${NAME}/upgrade`, {
      oci: `oci://${registry.host}/hecate-test/echo:2`,
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json().version, "2.0.0");
    assert.equal(r.json().image, `${registry.host}/hecate-test/echo@${digests.v2}`);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(workers);
    assert.deepEqual(failures, [], `0 failed requests (ok: ${ok})`);
    assert.ok(ok > 50, `requests were served during the upgrade (${ok})`);
    const now = (await (await fetch(`${daemon.url}/plugin/${NAME}/api/v`)).json()) as { version: string };
    assert.equal(now.version, "2.0.0");
    console.log(`upgrade under load: ${ok} requests, 0 failed`);
  });

  it("install by digest (after remove), the digest pinned exactly", async () => {
    const rm = await api("DELETE", `/admin/api/plugins/${NAME}`);
    assert.equal(rm.status, 200, rm.body);
    removeLocalImages(registry.host);
    const ref = `oci://${registry.host}/hecate-test/echo@${digests.v1}`;
    const r = await api("POST", "/admin/api/plugins?wait=loaded", { oci: ref });
    assert.equal(r.status, 201, r.body);
    assert.equal(r.json().version, "1.0.0");
    assert.equal(r.json().image, `${registry.host}/hecate-test/echo@${digests.v1}`);
    assert.ok(localImageExists(`${registry.host}/hecate-test/echo@${digests.v1}`));
    const info = await api("GET", `/admin/api/plugins/${NAME}`);
    assert.equal(info.json().manifest.container.image, `${registry.host}/hecate-test/echo@${digests.v1}`);
    const hello = await fetch(`${daemon.url}/plugin/${NAME}/api/x`);
    assert.equal(hello.status, 200);
    assert.equal(((await hello.json()) as { version: string }).version, "1.0.0");
    assert.equal((await api("DELETE", `/admin/api/plugins/${NAME}`)).status, 200);
  });

  it("a wrong digest is refused (422) and recorded; nothing is installed", async () => {
    const wrong = `sha256:${"0".repeat(64)}`;
    const r = await api("POST", "/admin/api/plugins?wait=loaded", {
      oci: `oci://${registry.host}/hecate-test/echo@${wrong}`,
    });
    assert.equal(r.status, 422, r.body);
    assert.equal(r.json().error.code, "manifest_unknown");
    const rej = (await api("GET", "/admin/api/rejections")).json().rejections[0];
    assert.equal(rej.code, "manifest_unknown");
    assert.equal(rej.source, "oci");
    assert.equal(rej.path, `oci://${registry.host}/hecate-test/echo@${wrong}`);
    const list = (await api("GET", "/admin/api/plugins")).json().plugins as { name: string; status: string }[];
    assert.ok(list.every((p) => p.status === "removed"));
  });

  it("a registry that is down: 502 registry_unreachable, a rejection event, no plugin, no image, no files", async () => {
    const port = await freePort();
    const ref = `oci://127.0.0.1:${port}/hecate-test/echo:1`;
    const before = (await api("GET", "/admin/api/plugins")).json().plugins.length;
    const r = await api("POST", "/admin/api/plugins", { oci: ref });
    assert.equal(r.status, 502, r.body);
    assert.equal(r.json().error.code, "registry_unreachable");
    assert.match(r.json().error.message, /127\.0\.0\.1:\d+ is unreachable: .*ECONNREFUSED/);
    const rej = (await api("GET", "/admin/api/rejections")).json().rejections[0];
    assert.equal(rej.code, "registry_unreachable");
    assert.equal(rej.path, ref);
    assert.equal((await api("GET", "/admin/api/plugins")).json().plugins.length, before);
    assert.equal(localImageExists(`127.0.0.1:${port}/hecate-test/echo:1`), false);
    assert.equal(existsSync(join(work, "home", "plugins", NAME, "package")), false);
  });

  it("an image without a plugin manifest label is refused before any pull", async () => {
    const r = await api("POST", "/admin/api/plugins", { oci: `oci://${registry.host}/hecate-test/nolabel:1` });
    assert.equal(r.status, 422, r.body);
    assert.equal(r.json().error.code, "no_plugin_manifest");
    assert.match(r.json().error.message, /io\.hecate\.manifest/);
    assert.equal(localImageExists(`${registry.host}/hecate-test/nolabel:1`), false);
  });

  it("HECATE_REQUIRE_DIGEST=1 refuses a reference without a digest, accepts one with", async () => {
    process.env.HECATE_REQUIRE_DIGEST = "1";
    try {
      const r = await api("POST", "/admin/api/plugins", { oci: `oci://${registry.host}/hecate-test/echo:1` });
      assert.equal(r.status, 422, r.body);
      assert.equal(r.json().error.code, "digest_required");
      const ok = await api("POST", "/admin/api/plugins?wait=loaded", {
        oci: `oci://${registry.host}/hecate-test/echo@${digests.v2}`,
      });
      assert.equal(ok.status, 201, ok.body);
      assert.equal(ok.json().version, "2.0.0");
    } finally {
      delete process.env.HECATE_REQUIRE_DIGEST;
    }
    const bad = await api("POST", "/admin/api/plugins", { oci: "oci://no-registry-here" });
    assert.equal(bad.status, 400, bad.body);
    assert.equal(bad.json().error.code, "invalid_reference");
  });
});

async function waitForFlags(
  api: (m: string, p: string) => Promise<{ json(): { flags: string[] } }>,
  name: string,
  flags: string[],
): Promise<string[]> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const got = (await api("GET", `/admin/api/plugins/${name}`)).json().flags;
    if (flags.every((f) => got.includes(f))) return got;
    if (Date.now() > deadline) assert.fail(`flags ${flags.join(",")} not set: ${got.join(",")}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
