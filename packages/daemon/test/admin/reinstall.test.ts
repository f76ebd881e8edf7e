/**
 * Install after a refused install, through the admin API of real daemons: a plugin whose extraction was refused
 * (recorded as failed, never activated) is installed again with POST /admin/api/plugins -- also after a restart, as
 * the rule lives in the event-sourced aggregate -- while a plugin that runs still answers 409 (use upgrade).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { gz, tarOf, validEntries } from "@hecate/package/testing";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const daemons: TestDaemon[] = [];
after(async () => {
  for (const d of daemons.reverse()) await d.stop();
});

const gzip = { "content-type": "application/gzip" };

/** A complete package of `name` whose code no longer matches its SHA-256 digest. */
function tamperedPackage(name: string): Buffer {
  return gz(
    tarOf(
      validEntries(name).map((e) =>
        e.name === "dist/index.js" ? { ...e, data: Buffer.from("export const x = 1;\n") } : e,
      ),
    ),
  );
}

test("a refused install is followed by a successful install of the fixed package (also after a restart)", async () => {
  const first = await startTestDaemon();
  daemons.push(first);
  const home = first.home;
  const name = "phoenix";
  const good = readFileSync(await buildPackage(first.work, { name, version: "1.0.0" }));

  const refused = await first.api("POST", "/admin/api/plugins", { body: tamperedPackage(name), headers: gzip });
  assert.equal(refused.status, 422);
  assert.equal((await refused.json()).error.code, "digest_mismatch");
  const view = await (await first.api("GET", `/admin/api/plugins/${name}`)).json();
  assert.equal(view.status, "failed");
  assert.equal(view.lastError.code, "digest_mismatch");
  // a second broken attempt is another refused attempt, not a 409
  const twice = await first.api("POST", "/admin/api/plugins", { body: tamperedPackage(name), headers: gzip });
  assert.equal(twice.status, 422, await twice.clone().text());
  assert.equal((await twice.json()).error.code, "digest_mismatch");

  // the rule is the aggregate's: it holds after a restart (state rebuilt from the events)
  await first.close();
  const second = await startTestDaemon({ home });
  daemons.push(second);
  const installed = await second.api("POST", "/admin/api/plugins", { body: good, headers: gzip });
  assert.equal(installed.status, 201, await installed.clone().text());
  const loaded = await installed.json();
  assert.equal(loaded.status, "loaded");
  assert.equal(loaded.lastError, null);
  const who = await fetch(`${second.url}/plugin/${name}/api/who`);
  assert.deepEqual(await who.json(), { name, version: "1.0.0" });

  // the events keep every attempt
  const { events } = await (await second.api("GET", `/admin/api/plugins/${name}/events`)).json();
  assert.deepEqual(
    (events as { type: string }[]).map((e) => e.type),
    [
      "plugin_installed_v1",
      "plugin_extract_failed_v1",
      "plugin_installed_v1",
      "plugin_extract_failed_v1",
      "plugin_installed_v1",
      "plugin_package_extracted_v1",
      "plugin_activated_v1",
      "plugin_load_confirmed_v1",
    ],
  );

  // running now: install is refused again (use upgrade), and the running version is untouched
  const conflict = await second.api("POST", "/admin/api/plugins", { body: good, headers: gzip });
  assert.equal(conflict.status, 409);
  assert.equal((await conflict.json()).error.code, "plugin_already_installed");
  const broken = await second.api("POST", "/admin/api/plugins", { body: tamperedPackage(name), headers: gzip });
  assert.equal(broken.status, 409);
  assert.equal((await fetch(`${second.url}/plugin/${name}/api/who`)).status, 200);
  assert.equal(readFileSync(join(home, "plugins", name, `${name}.tar.gz`)).equals(good), true);
});

test("a plugin whose first load failed (activated) is not re-installed: 409, activate or upgrade it", async () => {
  const d = await startTestDaemon();
  daemons.push(d);
  const bad = await buildPackage(d.work, { name: "brittle", version: "1.0.0", init: `throw new Error("boom");` });
  const r = await d.api("POST", "/admin/api/plugins", { body: readFileSync(bad), headers: gzip });
  assert.equal(r.status, 422, await r.clone().text());
  const view = await (await d.api("GET", "/admin/api/plugins/brittle")).json();
  assert.equal(view.status, "failed");
  assert.ok(view.flags.includes("ACTIVATED"), view.flags.join());
  const again = await d.api("POST", "/admin/api/plugins", { body: readFileSync(bad), headers: gzip });
  assert.equal(again.status, 409);
  assert.equal((await again.json()).error.code, "plugin_already_installed");
});

test("racing re-installs of a refused plugin: exactly one wins, and its package is the one installed", async () => {
  const d = await startTestDaemon();
  daemons.push(d);
  const name = "racer";
  const refused = await d.api("POST", "/admin/api/plugins", { body: tamperedPackage(name), headers: gzip });
  assert.equal(refused.status, 422);
  const versions = ["1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"];
  const bodies = await Promise.all(
    versions.map(async (version) => readFileSync(await buildPackage(d.work, { name, version }))),
  );
  const answers = await Promise.all(
    bodies.map(async (body) => {
      const r = await d.api("POST", "/admin/api/plugins", { body, headers: gzip });
      return { status: r.status, body: await r.json() };
    }),
  );
  const winners = answers.filter((a) => a.status === 201);
  assert.equal(winners.length, 1, JSON.stringify(answers.map((a) => a.status)));
  for (const a of answers.filter((x) => x.status !== 201)) {
    assert.equal(a.status, 409, JSON.stringify(a.body));
    assert.equal(a.body.error.code, "plugin_already_installed");
  }
  const version = winners[0]!.body.version as string;
  assert.deepEqual(await (await fetch(`${d.url}/plugin/${name}/api/who`)).json(), { name, version });
  const onDisk = readFileSync(join(d.home, "plugins", name, `${name}.tar.gz`));
  assert.ok(onDisk.equals(bodies[versions.indexOf(version)]!), "a losing upload replaced the winner's archive");
});
