/**
 * Boot adoption verifies like a first load (real Podman): a container plugin that swapped its socket for a symlink
 * to the admin socket while the daemon was down (kill -9: container and mounts left behind) is not adopted; it is
 * replaced by a fresh container (new socket dir) and never connected to through the symlink.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import { type Env, installPlugin, postJson, repoRoot, setup, skipReason } from "./helpers.js";

const skip = skipReason();
const fixture = join(repoRoot, "packages/daemon/test/container/fixtures/hostile");

describe("adoption of a tampered container (real podman)", { skip }, () => {
  let env: Env;
  let admin: Server;
  let adminHits = 0;
  before(async () => {
    env = await setup();
    // Where `../../hecate.sock` leads from the socket dir: a listener that counts every connection.
    admin = createServer((s) => {
      adminHits++;
      s.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 14\r\n\r\n{"plugins":[]}');
    });
    await new Promise<void>((r) => admin.listen(join(env.home, "run", "hecate.sock"), () => r()));
  });
  after(async () => {
    admin?.close();
    await env?.close();
  });

  it("a socket swapped while the daemon was down is not adopted: replaced, the admin socket never dialled", async () => {
    const spec = installPlugin(env.home, "ev", fixture);
    const first = env.newContainers();
    const loaded = await first.load(spec);
    const attack = await postJson(`${env.base}/plugin/ev/api/attack?kind=symlink-admin`);
    assert.equal(attack.status, 200, attack.text);
    await first.close({ leaveRunning: true }); // kill -9: the container keeps running with its tampered socket dir

    const second = env.newContainers();
    const again = await second.load(spec);
    assert.equal(again.adopted, false, "not adopted");
    assert.notEqual(again.containerId, loaded.containerId);
    assert.equal(again.generation, loaded.generation + 1);
    assert.ok(
      env.events.some((e) => e.type === "log" && e.plugin === "ev" && /plugin\.sock refused: a symlink/.test(e.msg)),
    );
    const r = await request(`${env.base}/plugin/ev/api/admin/api/plugins`);
    assert.deepEqual(((await r.body.json()) as { from: string }).from, "plugin");
    assert.equal(adminHits, 0, "nothing ever connected to the admin socket");
    assert.equal(await env.podman.inspectContainer(loaded.containerId), null, "the tampered container is gone");
    await second.unload("ev");
  });
});
