/**
 * Cluster mode with an `oci://` install (real registry, real Podman): the node that takes the install records the
 * pull; every other node pulls the digest-pinned image itself. B is down while A installs; A stops and the image is
 * removed from Podman (as on another machine); B comes up, catches up, pulls the image by its digest and serves it.
 * A restarted serves it again; the shared stream holds one pull start and one completion.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { removeHomeContainers } from "../container/helpers.js";
import {
  buildAndPush,
  ensureBaseImage,
  imageManifest,
  localImageExists,
  removeLocalImages,
  startRegistry,
  type TestRegistry,
} from "../container/registry-helpers.js";
import type { TestDaemon } from "../lifecycle/helpers.js";
import { count, sharedTypes, untilServed, useCluster } from "./helpers.js";

const cluster = useCluster("cluster-oci");
const NAME = "cluster-echo";
let registry: TestRegistry;

before(async () => {
  await ensureBaseImage();
  registry = await startRegistry();
});
after(async () => {
  for (const id of ["a", "b"]) await removeHomeContainers(join(cluster.work, `home-${id}`));
  removeLocalImages(registry.host);
  await registry?.stop();
});

const start = (id: string) => cluster.start(id, { containers: true });
const stop = (d: TestDaemon) => cluster.stop(d);

test("oci:// install in cluster mode: a node that was down pulls the digest-pinned image itself and serves it", async (t) => {
  const repo = `${registry.host}/hecate-test/cluster-echo`;
  const digest = await buildAndPush(`${repo}:1`, "1.0.0", imageManifest(NAME, "1.0.0"));
  const pinned = `${repo}@${digest}`;

  const a = await start("a");
  const r = await a.api("POST", "/admin/api/plugins", {
    body: JSON.stringify({ oci: `oci://${repo}:1` }),
    headers: { "content-type": "application/json" },
  });
  assert.equal(r.status, 201, await r.clone().text());
  assert.equal((await r.json()).image, pinned);
  await untilServed([a], NAME, "1.0.0", 5000);
  await stop(a);
  removeLocalImages(registry.host);
  assert.equal(localImageExists(pinned), false, "the image is gone from Podman");

  const t0 = performance.now();
  const b = await start("b");
  await untilServed([b], NAME, "1.0.0", 60_000);
  t.diagnostic(`B pulled and served the image ${(performance.now() - t0).toFixed(0)} ms after its start began`);
  assert.ok(localImageExists(pinned), "B pulled the pinned image");

  const a2 = await start("a");
  await untilServed([a2, b], NAME, "1.0.0", 30_000);
  const types = await sharedTypes(cluster.server.url, NAME);
  for (const type of ["oci_pull_started_v1", "oci_pull_completed_v1", "plugin_package_extracted_v1"])
    assert.equal(count(types, type), 1, `${type} once: ${types.join(",")}`);
  const list = await (await b.api("GET", "/admin/api/plugins")).json();
  const view = list.plugins.find((p: { name: string }) => p.name === NAME);
  assert.equal(view.status, "loaded");
  assert.deepEqual(
    view.nodes.map((n: { node: string; status: string; version: string }) => [n.node, n.status, n.version]),
    [
      ["a", "loaded", "1.0.0"],
      ["b", "loaded", "1.0.0"],
    ],
  );
});
