/**
 * Cluster mode across a PostgreSQL restart (`pg_ctl restart -m fast`: every connection dropped): both nodes reconnect
 * (store pool, LISTEN connection, cluster tables) and an install through A after the restart is loaded on B, each
 * shared step recorded once.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildPackage, until } from "../lifecycle/helpers.js";
import { count, sharedTypes, untilServed, useCluster } from "./helpers.js";

const cluster = useCluster("cluster-pgr");

test("PostgreSQL restarted: both nodes reconnect, an install on A after it is loaded on B", async (t) => {
  const { server, work } = cluster;
  const [before1, after1] = await Promise.all([
    buildPackage(work, { name: "early", version: "1.0.0" }),
    buildPackage(work, { name: "later", version: "1.0.0" }),
  ]);
  const [a, b] = await Promise.all(["a", "b"].map((id) => cluster.start(id)));
  const gzip = { "content-type": "application/gzip" };
  const r1 = await a.api("POST", "/admin/api/plugins", { body: readFileSync(before1), headers: gzip });
  assert.equal(r1.status, 201, await r1.clone().text());
  await untilServed([a, b], "early", "1.0.0", 10_000);

  await server.restart();

  // the first request after the restart may meet a dropped connection: retried until the pools reconnected
  const refused: string[] = [];
  const r2 = await until(
    async () => {
      const r = await a.api("POST", "/admin/api/plugins", { body: readFileSync(after1), headers: gzip });
      if (r.status === 201) return r;
      refused.push(`${r.status} ${await r.text()}`);
      return null;
    },
    20_000,
    "install after the restart",
  );
  assert.equal(r2?.status, 201);
  t.diagnostic(`installs refused right after the restart: ${refused.length} ${refused.join(" | ").slice(0, 300)}`);
  await untilServed([a, b], "later", "1.0.0", 10_000);
  await untilServed([a, b], "early", "1.0.0", 1000);
  const types = await sharedTypes(server.url, "later");
  for (const type of ["plugin_installed_v1", "plugin_package_extracted_v1", "plugin_activated_v1"])
    assert.equal(count(types, type), 1, `${type} once: ${types.join(",")}`);
  const list = await (await b.api("GET", "/admin/api/plugins")).json();
  const later = list.plugins.find((p: { name: string }) => p.name === "later");
  assert.deepEqual(
    later.nodes.map((n: { node: string; status: string }) => [n.node, n.status]),
    [
      ["a", "loaded"],
      ["b", "loaded"],
    ],
  );
});
