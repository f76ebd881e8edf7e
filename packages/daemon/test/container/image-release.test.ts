/**
 * Container images are released when nobody uses them any more (container/image-refs.ts), real Podman, real daemon:
 * removing a plugin removes its image unless another installed plugin uses it; an upgrade to another image releases
 * the old generation's image once the swap is done; hecate's Node base image is never removed.
 *
 * The plugins' images are built here from the Node base image (`podman build`: a label only, so a new image id
 * sharing the base's layers, ~1 s) and named by the manifest's `container.image`: ContainerPlugins releases the image the
 * container spec carries, whatever put it there (an archive in the package, a registry pull, or as here, a local
 * build).
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packPlugin } from "@hecate/package";
import { cliImageStore, IMAGE_RECORD, releaseImages, writeHeld } from "../../src/container/image-refs.js";
import { nodeBaseImageRef } from "../../src/container/index.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";
import { unixRequest } from "../lifecycle/helpers.js";
import { removeHomeContainers } from "./helpers.js";
import { ensureBaseImage } from "./registry-helpers.js";

const tag = `${process.pid}`;
const IMAGES = {
  a1: `localhost/hecate-test-release-a-${tag}:1`,
  a2: `localhost/hecate-test-release-a-${tag}:2`,
  shared: `localhost/hecate-test-release-shared-${tag}:1`,
  cli: `localhost/hecate-test-release-cli-${tag}:1`,
};

const SERVER = `
import { createServer } from "node:http";
createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ image: process.env.TEST_IMAGE_LABEL ?? null, url: req.url }));
}).listen("/run/plugin/plugin.sock");
`;

let work: string;
let daemon: Daemon;

/** Podman's image id of `ref`, or null when there is none (CLI: independent of the daemon's service). */
function imageId(ref: string): string | null {
  try {
    return execFileSync("podman", ["image", "inspect", "--format", "{{.Id}}", ref], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
  } catch {
    return null;
  }
}

/** A new image from the Node base image: one label, no layer of its own. */
function buildImage(ref: string, label: string): string {
  const dir = mkdtempSync(join(work, "img-"));
  writeFileSync(join(dir, "Containerfile"), `FROM ${nodeBaseImageRef()}\nLABEL hecate.test=${label}\n`);
  execFileSync("podman", ["build", "-q", "-t", ref, dir], { stdio: "ignore" });
  return imageId(ref)!;
}

async function pack(name: string, version: string, image: string | undefined): Promise<string> {
  const src = mkdtempSync(join(work, `src-${name}-`));
  writeFileSync(join(src, "server.mjs"), SERVER);
  const container = image
    ? { image, command: [process.execPath, "/plugin/server.mjs"] }
    : { command: ["node", "/plugin/server.mjs"] };
  writeFileSync(
    join(src, "manifest.json"),
    JSON.stringify({ name, version, plugin_type: "container", container: { ...container, health_path: "/" } }),
  );
  const out = join(work, `${name}-${version}.tar.gz`);
  await packPlugin(src, out);
  return out;
}

async function api(method: string, path: string, body?: unknown) {
  return unixRequest(daemon.socketPath, method, path, body === undefined ? undefined : JSON.stringify(body), {
    "content-type": "application/json",
  });
}

async function install(archive: string) {
  const r = await api("POST", "/admin/api/plugins", { path: archive });
  assert.equal(r.status, 201, r.body);
}

async function upgrade(name: string, archive: string) {
  const r = await api("POST", `/admin/api/plugins/${name}/upgrade`, { path: archive });
  assert.equal(r.status, 200, r.body);
}

async function remove(name: string) {
  const r = await api("DELETE", `/admin/api/plugins/${name}?purge=1`);
  assert.equal(r.status, 200, r.body);
}

before(() => {
  work = mkdtempSync(join(tmpdir(), "hecate-images-"));
});
after(() => {
  for (const ref of Object.values(IMAGES)) execFileSync("podman", ["rmi", "-f", "--ignore", ref], { stdio: "ignore" });
  rmSync(work, { recursive: true, force: true });
});

describe("container images are released when no plugin uses them (real podman)", () => {
  before(async () => {
    await ensureBaseImage();
    daemon = await startDaemon({
      home: join(work, "home"),
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
  });
  after(async () => {
    await daemon?.close();
    await removeHomeContainers(join(work, "home"));
  });

  it("remove frees the plugin's image; an image two plugins use stays until the last one goes", async () => {
    const a1 = buildImage(IMAGES.a1, "a1");
    const shared = buildImage(IMAGES.shared, "shared");
    await install(await pack("rel-a", "1.0.0", IMAGES.a1));
    await install(await pack("rel-s1", "1.0.0", IMAGES.shared));
    await install(await pack("rel-s2", "1.0.0", IMAGES.shared));
    const record = JSON.parse(readFileSync(join(daemon.home, "plugins", "rel-a", IMAGE_RECORD), "utf8"));
    assert.deepEqual(record.images, [{ id: a1, ref: IMAGES.a1 }]);

    const t0 = Date.now();
    await remove("rel-a");
    console.log(`# remove + image release: ${Date.now() - t0} ms`);
    assert.equal(imageId(IMAGES.a1), null, "the removed plugin's image is gone");

    await remove("rel-s1");
    assert.equal(imageId(IMAGES.shared), shared, "rel-s2 still uses the shared image");
    const r = await fetch(`${daemon.url}/plugin/rel-s2/api/x`);
    assert.equal(r.status, 200, "and still runs");
    await r.arrayBuffer();
    await remove("rel-s2");
    assert.equal(imageId(IMAGES.shared), null, "the last user gone, the image goes");
  });

  it("a deactivated plugin still holds its image (it needs it to run again)", async () => {
    const shared = buildImage(IMAGES.shared, "shared-again");
    await install(await pack("rel-on", "1.0.0", IMAGES.shared));
    await install(await pack("rel-off", "1.0.0", IMAGES.shared));
    assert.equal((await api("POST", "/admin/api/plugins/rel-off/deactivate")).status, 200);
    await remove("rel-on");
    assert.equal(imageId(IMAGES.shared), shared, "held by the deactivated rel-off");
    assert.equal((await api("POST", "/admin/api/plugins/rel-off/activate")).status, 200);
    await remove("rel-off");
    assert.equal(imageId(IMAGES.shared), null);
  });

  it("upgrade to another image: the old generation's image is released once the swap is done", async () => {
    const a1 = buildImage(IMAGES.a1, "up-1");
    const a2 = buildImage(IMAGES.a2, "up-2");
    assert.notEqual(a1, a2);
    await install(await pack("rel-up", "1.0.0", IMAGES.a1));
    await upgrade("rel-up", await pack("rel-up", "2.0.0", IMAGES.a2));
    assert.equal(imageId(IMAGES.a1), null, "generation 1's image released after the swap");
    assert.equal(imageId(IMAGES.a2), a2);
    const record = JSON.parse(readFileSync(join(daemon.home, "plugins", "rel-up", IMAGE_RECORD), "utf8"));
    assert.deepEqual(record.images, [{ id: a2, ref: IMAGES.a2 }]);
    // the same image again (a settings-like swap): nothing released
    await upgrade("rel-up", await pack("rel-up", "2.0.1", IMAGES.a2));
    assert.equal(imageId(IMAGES.a2), a2);
    await remove("rel-up");
    assert.equal(imageId(IMAGES.a2), null);
  });

  it("the Node base image is never removed with a plugin", async () => {
    const base = imageId(nodeBaseImageRef());
    assert.ok(base);
    mkdirSync(work, { recursive: true });
    await install(await pack("rel-base", "1.0.0", undefined));
    await remove("rel-base");
    assert.equal(imageId(nodeBaseImageRef()), base);
  });
});

describe("release without the daemon's Podman service (CLI), and Podman's own refusal while a container uses it", () => {
  it("kept while a container uses it or another plugin's manifest names it; removed once neither holds", async () => {
    const id = buildImage(IMAGES.cli, "cli");
    const plugins = mkdtempSync(join(work, "plugins-"));
    for (const n of ["p1", "p2"]) mkdirSync(join(plugins, n, "package"), { recursive: true });
    const held = [{ id, ref: IMAGES.cli }];
    writeHeld(join(plugins, "p1"), held);
    const store = cliImageStore();
    // p2 is installed and names the image (it never ran: no record of its own)
    writeFileSync(
      join(plugins, "p2", "package", "manifest.json"),
      JSON.stringify({ container: { image: IMAGES.cli } }),
    );
    let r = await releaseImages(store, plugins, "p1", held);
    assert.deepEqual(r.kept, [{ image: held[0], why: "held" }]);
    rmSync(join(plugins, "p2"), { recursive: true });
    // a container (not ours: no hecate label) uses it: Podman refuses, the image is kept
    const container = execFileSync("podman", ["create", IMAGES.cli, "--version"], { encoding: "utf8" }).trim();
    try {
      r = await releaseImages(store, plugins, "p1", held);
      assert.deepEqual(r.kept, [{ image: held[0], why: "in_use" }]);
      assert.equal(imageId(IMAGES.cli), id);
    } finally {
      execFileSync("podman", ["rm", "-f", container], { stdio: "ignore" });
    }
    r = await releaseImages(store, plugins, "p1", held);
    assert.deepEqual(r.removed, held);
    assert.equal(imageId(IMAGES.cli), null);
    // gone already: nothing to do, no error
    assert.deepEqual(await releaseImages(store, plugins, "p1", held), { removed: [], kept: [] });
  });
});
