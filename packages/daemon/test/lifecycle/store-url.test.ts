/**
 * HECATE_STORE_URL / `storeUrl`: the daemon's lifecycle store in a real PostgreSQL (started here). An install goes
 * through the whole lifecycle with its events in PostgreSQL (no lifecycle SQLite file), and a restart on the same
 * database loads the plugin again at boot. (An unreachable server at boot: test/cluster/boot-retry.test.ts.)
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { openEventStore } from "@hecate/store";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import { buildPackage, startTestDaemon, until } from "./helpers.js";

let server: PgServer;
let work: string;
let archive: string;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "hecate-pgstore-"));
  [server, archive] = await Promise.all([startPostgres(), buildPackage(work, { name: "pgplug", version: "1.0.0" })]);
});
after(async () => {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

test("storeUrl: the lifecycle runs on PostgreSQL and survives a daemon restart", async () => {
  const home = join(work, "home");
  let d = await startTestDaemon({ home, storeUrl: server.url });
  try {
    assert.match(d.lifecycle.store.location, /^postgres:\/\/hecate@127\.0\.0\.1:\d+\/postgres#plugins$/);
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(archive),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.clone().text());
    assert.equal(((await (await fetch(`${d.url}/plugin/pgplug/api/who`)).json()) as { name: string }).name, "pgplug");
  } finally {
    await d.stop();
  }
  assert.equal(existsSync(join(home, "lifecycle", "plugins.sqlite")), false, "no lifecycle SQLite file");
  const store = openEventStore({ url: server.url, storeId: "plugins" });
  const types = (await store.readStream("plugin-pgplug")).map((e) => e.type);
  await store.close();
  assert.ok(types.includes("plugin_installed_v1") && types.includes("plugin_load_confirmed_v1"), types.join(","));

  // Same home, same database: the plugin is loaded again at boot from the PostgreSQL state.
  d = await startTestDaemon({ home, storeUrl: server.url });
  try {
    const v = await until(() => (d.lifecycle.view("pgplug")?.status === "loaded" ? true : null), 20_000, "reload");
    assert.ok(v);
    assert.equal((await fetch(`${d.url}/plugin/pgplug/api/who`)).status, 200);
  } finally {
    await d.stop();
  }
});
