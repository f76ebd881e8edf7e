import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { type Env, installPlugin, setup, skipReason } from "./helpers.js";

const skip = skipReason();

describe("container plugin lifecycle (real podman)", { skip }, () => {
  let env: Env;
  before(async () => {
    env = await setup();
  });
  after(async () => {
    await env?.close();
  });

  it("load -> hardened container answers through the proxy -> unload -> gone", async () => {
    const spec = installPlugin(env.home, "echo1");
    const loaded = await env.containers.load(spec);
    assert.equal(loaded.name, "echo1");

    const r = await request(`${env.base}/plugin/echo1/api/hello`);
    assert.equal(r.statusCode, 200);
    const body = (await r.body.json()) as { hello: string; uid: number };
    assert.equal(body.hello, "from a container");
    assert.equal(body.uid, loaded.uid);
    assert.ok(loaded.uid >= 200_000, "runs as its own uid, not root");

    const info = await env.podman.inspectContainer(loaded.containerId);
    assert.ok(info);
    assert.equal(info.State.Running, true);
    assert.equal(info.HostConfig.ReadonlyRootfs, true);
    assert.equal(info.HostConfig.NetworkMode, "none");
    assert.equal(info.HostConfig.Memory, 128 * 1024 * 1024);
    assert.equal(info.HostConfig.NanoCpus, 0.5e9);
    assert.equal(info.HostConfig.PidsLimit, 64);
    assert.ok((info.HostConfig.SecurityOpt ?? []).some((s) => s.startsWith("no-new-privileges")));
    assert.ok((info.HostConfig.CapDrop ?? []).length > 0);
    const ulimits = (info.HostConfig.Ulimits ?? []) as { Name: string }[];
    assert.deepEqual(ulimits.map((u) => u.Name.replace(/^RLIMIT_/i, "").toLowerCase()).sort(), ["nofile", "nproc"]);
    assert.equal(info.Config.User, `${loaded.uid}:${loaded.uid}`);
    assert.equal(info.Config.Labels["hecate.instance"], env.containers.instanceId);
    assert.equal(info.Config.Labels["hecate.plugin"], "echo1");

    // Static assets come from the plugin dir, served by the daemon (not proxied).
    const page = await request(`${env.base}/plugin/echo1/index.html`);
    assert.equal(page.statusCode, 200);
    assert.match(await page.body.text(), /container-echo/);

    const t0 = Date.now();
    assert.equal(await env.containers.unload("echo1"), true);
    assert.ok(Date.now() - t0 < 4000, "SIGTERM stops the SDK server promptly");
    const after404 = await request(`${env.base}/plugin/echo1/api/hello`);
    assert.equal(after404.statusCode, 404);
    await after404.body.dump();
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null);
    assert.deepEqual(await env.podman.listContainers(`hecate.instance=${env.containers.instanceId}`), []);
  });

  it("swap: the new container is healthy before the routes switch; no request fails during the swap", async () => {
    const v1 = installPlugin(env.home, "sw");
    const first = await env.containers.load(v1);
    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const load = (async () => {
      while (!stop) {
        try {
          const r = await request(`${env.base}/plugin/sw/api/hello`);
          await r.body.dump();
          if (r.statusCode === 200) ok++;
          else failures.push(String(r.statusCode));
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    })();
    const v2 = { ...v1, settings: { v: 2 } };
    const second = await env.containers.swap("sw", v2);
    await new Promise((r) => setTimeout(r, 200));
    stop = true;
    await load;
    assert.deepEqual(failures, []);
    assert.ok(ok > 10, `requests kept flowing (${ok})`);
    assert.equal(second.generation, 2);
    assert.notEqual(second.containerId, first.containerId);
    assert.equal(await env.podman.inspectContainer(first.containerId), null, "old container removed");
    await env.containers.unload("sw");
  });

  it("a plugin that never becomes healthy fails to load with a typed error and leaves nothing behind", async () => {
    const spec = installPlugin(env.home, "broken", undefined, (m) => {
      m.container = { ...m.container, command: ["node", "-e", "console.error('boom at start'); process.exit(2)"] };
    });
    await assert.rejects(env.containers.load(spec), (err: Error & { code?: string; logs?: string }) => {
      assert.equal(err.name, "ContainerPluginError");
      assert.equal(err.code, "start_failed");
      assert.match(err.logs ?? "", /boom at start/);
      return true;
    });
    const left = await env.podman.listContainers(`hecate.plugin=broken`);
    assert.deepEqual(left, []);
    assert.equal(env.containers.get("broken"), undefined);
  });
});
