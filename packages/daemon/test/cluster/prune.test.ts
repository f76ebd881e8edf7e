/**
 * Cluster mode: the package table is pruned by the nodes themselves (short timings here: every 150 ms, 400 ms grace).
 * An upgrade's old bytes go once every node has moved past it; while a node is down (its checkpoint behind the
 * upgrade) they stay, and go after it came back and caught up; a removed plugin's bytes go; bytes stored for an
 * install whose event is not appended yet stay for the grace period, and past it while the install holds the package
 * lock; a package pruned earlier can be installed again.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import pg from "pg";
import pino from "pino";
import { PackagePruner } from "../../src/cluster/package-prune.js";
import { buildPackage, type TestDaemon, until } from "../lifecycle/helpers.js";
import { untilServed, useCluster } from "./helpers.js";

const cluster = useCluster("cluster-prune");
const gzip = { "content-type": "application/gzip" };
const TIMINGS = { everyMs: 150, graceMs: 400 };
const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

const start = (id: string) => cluster.start(id, { packagePrune: TIMINGS });

async function stored(): Promise<string[]> {
  const c = new pg.Client({ connectionString: cluster.server.url });
  await c.connect();
  try {
    return (await c.query<{ sha256: string }>("SELECT sha256 FROM hecate_cluster_packages ORDER BY sha256")).rows.map(
      (r) => r.sha256,
    );
  } finally {
    await c.end();
  }
}

const untilStored = (want: string[], ms = 10_000) =>
  until(async () => JSON.stringify(await stored()) === JSON.stringify([...want].sort()), ms, `package table ${want}`);

test("package table: old bytes go once every node moved past them, a down node holds them, removed plugins' bytes go, fresh bytes wait for the grace", async (t) => {
  const [v1, v2, v3] = await Promise.all(
    ["1.0.0", "2.0.0", "3.0.0"].map((version) => buildPackage(cluster.work, { name: "pruned", version })),
  );
  const [a, b] = await Promise.all([start("a"), start("b")]);
  const send = async (d: TestDaemon, path: string, file: string, status: number) => {
    const r = await d.api("POST", path, { body: readFileSync(file), headers: gzip });
    assert.equal(r.status, status, await r.clone().text());
  };

  await send(a, "/admin/api/plugins", v1, 201);
  await untilServed([a, b], "pruned", "1.0.0");
  assert.deepEqual(await stored(), [sha(v1)]);

  // upgrade on B: v1's bytes go once both nodes handled the upgrade
  const t0 = performance.now();
  await send(b, "/admin/api/plugins/pruned/upgrade", v2, 200);
  await untilServed([a, b], "pruned", "2.0.0");
  await untilStored([sha(v2)]);
  t.diagnostic(`v1's bytes pruned ${(performance.now() - t0).toFixed(0)} ms after the upgrade began`);

  // B down, upgrade to v3 on A: v2's bytes stay while B's checkpoint is behind the upgrade
  await cluster.stop(b);
  await send(a, "/admin/api/plugins/pruned/upgrade", v3, 200);
  await new Promise((r) => setTimeout(r, TIMINGS.graceMs + 5 * TIMINGS.everyMs));
  assert.deepEqual(await stored(), [sha(v2), sha(v3)].sort(), "v2 kept while B has not moved past the upgrade");
  const oneOff = new PackagePruner({
    store: a.lifecycle.store,
    cluster: a.cluster!,
    plugins: () => a.lifecycle.list().map((p) => p.name),
    logger: pino({ level: "silent" }),
  });
  // A pass is skipped while another node's periodic pass holds the lock at that moment: ask again until one ran.
  const passThatRan = async () => {
    for (let i = 0; ; i++) {
      const r = await oneOff.prune();
      if (!r.skipped || i === 50) return r;
      await new Promise((res) => setTimeout(res, 5));
    }
  };
  const pass = await passThatRan();
  assert.deepEqual(pass.deleted, []);
  assert.match(pass.kept.find((k) => k.sha256 === sha(v2))?.why ?? "", /^nodes b not past position \d+$/);
  assert.equal(pass.kept.find((k) => k.sha256 === sha(v3))?.why, "current package of pruned");

  // B comes back, catches up to v3: v2's bytes go
  const b2 = await start("b");
  await untilServed([b2], "pruned", "3.0.0");
  await untilStored([sha(v3)]);

  // bytes stored for an install not yet recorded (the window before its event): kept for the grace, then gone
  const other = await buildPackage(cluster.work, { name: "other", version: "1.0.0" });
  const orphan = await a.cluster!.storePackage(other);
  assert.equal(orphan, sha(other));
  const pass2 = await passThatRan();
  assert.ok(
    pass2.kept.some((k) => k.sha256 === orphan && /^stored within/.test(k.why)),
    JSON.stringify(pass2),
  );
  await untilStored([sha(v3)]);

  // an install holding the package lock (bytes stored, event not appended yet) past the grace: passes skip, bytes stay
  const held = await buildPackage(cluster.work, { name: "held", version: "1.0.0" });
  await a.cluster!.withPackageLock(async () => {
    const bytes = await a.cluster!.storePackage(held);
    await new Promise((r) => setTimeout(r, TIMINGS.graceMs + 3 * TIMINGS.everyMs));
    assert.deepEqual(
      await oneOff.prune(),
      { deleted: [], kept: [], skipped: true },
      "a pass does not run while an install holds the lock",
    );
    assert.ok((await stored()).includes(bytes), "kept past the grace while the lock is held");
  });
  await untilStored([sha(v3)]); // never appended: pruned once the lock is released

  // remove: the plugin's bytes go; installing a pruned package again stores it again and rolls out
  const rm = await b2.api("DELETE", "/admin/api/plugins/pruned");
  assert.equal(rm.status, 200, await rm.clone().text());
  await untilStored([]);
  await send(b2, "/admin/api/plugins", v1, 201);
  await untilServed([a, b2], "pruned", "1.0.0");
  await new Promise((r) => setTimeout(r, TIMINGS.graceMs + 3 * TIMINGS.everyMs));
  assert.deepEqual(await stored(), [sha(v1)], "the current package stays");
});
