import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { PodmanClient } from "../../src/container/index.js";
import { type Env, installPlugin, setup, skipReason } from "./helpers.js";

const skip = skipReason();

describe("boot reconciliation after a daemon crash (real podman)", { skip }, () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await env?.close();
  });

  it("adopts healthy containers of loaded plugins, removes the others, loads the missing; no orphans remain", async () => {
    const keep = installPlugin(env.home, "keep");
    const drop = installPlugin(env.home, "drop");
    const changed = installPlugin(env.home, "changed");
    const missing = installPlugin(env.home, "missing");
    const first = env.containers;
    const k1 = await first.load(keep);
    const d1 = await first.load(drop);
    const c1 = await first.load(changed);
    // Simulated kill -9 of the daemon: no cleanup at all, containers keep running.
    await first.close({ leaveRunning: true });
    env.router.removePlugin("keep");
    env.router.removePlugin("drop");
    env.router.removePlugin("changed");
    // A half-created container of this instance (crash between create and start) is an orphan too.
    const image = await first.ensureBaseImage();
    const halfId = await env.podman.createContainer({
      name: `hecate-${first.instanceId.slice(0, 8)}-half-1`,
      Image: image,
      Labels: { "hecate.instance": first.instanceId, "hecate.plugin": "half" },
      HostConfig: { NetworkMode: "none" },
    });
    // A container of another daemon instance must not be touched.
    const foreignId = await env.podman.createContainer({
      name: `hecate-foreign-${Date.now()}`,
      Image: image,
      Labels: { "hecate.instance": "another-daemon", "hecate.plugin": "x" },
      HostConfig: { NetworkMode: "none" },
    });

    try {
      const second = env.newContainers(); // same HECATE_HOME -> same persistent instance id
      assert.equal(second.instanceId, first.instanceId);
      changed.manifest.container = { ...changed.manifest.container, memory_mb: 96 };
      const res = await second.reconcile([keep, changed, missing]);
      assert.deepEqual(res.adopted, ["keep"]);
      assert.deepEqual(res.loaded.sort(), ["changed", "missing"]);
      assert.deepEqual(res.failed, []);
      assert.equal(second.get("keep")?.containerId, k1.containerId, "adopted, not restarted");
      assert.notEqual(second.get("changed")?.containerId, c1.containerId, "spec changed -> replaced");
      assert.equal(await env.podman.inspectContainer(d1.containerId), null, "unwanted container removed");
      assert.equal(await env.podman.inspectContainer(c1.containerId), null, "stale-spec container removed");
      assert.equal(await env.podman.inspectContainer(halfId), null, "half-created container removed");
      assert.ok(await env.podman.inspectContainer(foreignId), "other instance's container untouched");

      for (const name of ["keep", "changed", "missing"]) {
        const r = await request(`${env.base}/plugin/${name}/api/hello`);
        assert.equal(r.statusCode, 200, name);
        await r.body.dump();
      }
      const running = (await env.podman.listContainers(`hecate.instance=${first.instanceId}`)).map(
        (c) => c.Labels["hecate.plugin"],
      );
      assert.deepEqual(running.sort(), ["changed", "keep", "missing"]);

      await second.close();
      assert.deepEqual(await env.podman.listContainers(`hecate.instance=${first.instanceId}`), []);
    } finally {
      await env.podman.removeContainer(foreignId);
    }
  });
});

describe("podman API service of a crashed daemon (real podman)", { skip }, () => {
  it("is adopted by the next client on the same socket and stopped by it; a recycled pid is never signalled", async () => {
    const home = mkdtempSync(join(tmpdir(), "hct-svc-"));
    const socketPath = join(home, "run", "podman.sock");
    const first = new PodmanClient({ socketPath });
    const second = new PodmanClient({ socketPath });
    try {
      await first.ensureService();
      // The first daemon "dies" (kill -9): its client never stops the service.
      const [pid] = readFileSync(`${socketPath}.pid`, "utf8").split(" ").map(Number);
      assert.ok(existsSync(`/proc/${pid}`));

      // A pid file naming some other live process (a recycled pid) must not be trusted.
      const real = readFileSync(`${socketPath}.pid`, "utf8");
      writeFileSync(`${socketPath}.pid`, `${process.pid} 1\n`);
      const decoy = new PodmanClient({ socketPath });
      await decoy.ensureService();
      await decoy.stopService();
      await decoy.close();
      assert.ok(await second.ping(), "service still up: the decoy adopted nothing");
      writeFileSync(`${socketPath}.pid`, real);

      await second.ensureService();
      await second.stopService();
      assert.equal(await second.ping(), false, "the adopted service was stopped");
      assert.equal(existsSync(`/proc/${pid}`), false);
    } finally {
      await first.stopService();
      await first.close();
      await second.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
