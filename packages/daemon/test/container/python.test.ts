import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { buildPythonImageArchive } from "../../src/container/python-image.js";
import { type Env, installPlugin, repoRoot, setup, skipReason } from "./helpers.js";

const skip = skipReason();
const IMAGE = "localhost/hecate-test-python:1";

describe("non-Node container plugin: Python from an OCI archive (real podman)", { skip }, () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await env?.podman.removeImage(IMAGE).catch(() => {});
    await env?.close();
  });

  it("loads the package's image archive with podman load and answers through the proxy", async () => {
    const spec = installPlugin(env.home, "py", join(repoRoot, "examples/container-python"), (m) => {
      m.container = { ...m.container, image: IMAGE };
    });
    // The package ships its image: build it from the host's python3 into the plugin dir, then drop the image so
    // load must come from the archive.
    await buildPythonImageArchive(join(spec.dir, "package", "image.tar"), IMAGE);
    await env.podman.removeImage(IMAGE);
    assert.equal(await env.podman.imageExists(IMAGE), false);

    const loaded = await env.containers.load(spec);
    assert.equal(await env.podman.imageExists(IMAGE), true);
    const r = await request(`${env.base}/plugin/py/api/hello`);
    assert.equal(r.statusCode, 200);
    const body = (await r.body.json()) as { hello: string; uid: number };
    assert.equal(body.hello, "from python");
    assert.equal(body.uid, loaded.uid);
    const e = await request(`${env.base}/plugin/py/api/echo`, {
      method: "POST",
      body: "ping",
      headers: { "content-type": "application/json" }, // the daemon takes JSON bodies only (CSRF rule)
    });
    assert.equal(e.statusCode, 200);
    assert.equal(await e.body.text(), "ping");
    const info = await env.podman.inspectContainer(loaded.containerId);
    assert.equal(info?.HostConfig.ReadonlyRootfs, true);
    assert.equal(info?.HostConfig.Memory, 64 * 1024 * 1024);
    const t0 = Date.now();
    await env.containers.unload("py");
    assert.ok(Date.now() - t0 < 4000, "the Python server stops on SIGTERM");
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null);
  });
});
