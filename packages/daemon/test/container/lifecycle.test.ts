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
    const loaded = await env.runtime.load(spec);
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
    assert.equal(info.Config.Labels["hecate.instance"], env.runtime.instanceId);
    assert.equal(info.Config.Labels["hecate.plugin"], "echo1");

    assert.equal(await env.runtime.unload("echo1"), true);
    const after404 = await request(`${env.base}/plugin/echo1/api/hello`);
    assert.equal(after404.statusCode, 404);
    await after404.body.dump();
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null);
    assert.deepEqual(await env.podman.listContainers(`hecate.instance=${env.runtime.instanceId}`), []);
  });
});
