/**
 * `hecate plugin list` in cluster mode: two daemons (`hecate start`) share one real PostgreSQL (started here) through
 * HECATE_STORE_URL; a plugin installed with the CLI through node one is listed by node two with every node's own
 * status (NODES column; `cluster` and per-plugin `nodes` in --json).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import type { PluginListAnswer } from "../src/client.js";
import { cliJson, FIXTURES, runCli, startTestDaemon, type TestDaemon } from "./helpers.js";

const ECHO = join(FIXTURES, "echo-plugin");
let server: PgServer;
const daemons: TestDaemon[] = [];

before(async () => {
  server = await startPostgres();
});
after(async () => {
  await Promise.all(daemons.map((d) => d.stop()));
  await server?.stop();
});

test("plugin list shows each node's status when the daemons share a HECATE_STORE_URL", async () => {
  const env = (node: string) => ({ HECATE_STORE_URL: server.url, HECATE_NODE_ID: node });
  daemons.push(...(await Promise.all([startTestDaemon({ env: env("one") }), startTestDaemon({ env: env("two") })])));
  const [one, two] = daemons;
  const installed = await runCli(["plugin", "install", ECHO], { home: one.home });
  assert.equal(installed.code, 0, installed.stderr);

  // node two has loaded it too (its own status row), and lists both nodes
  const list = await (async () => {
    for (const deadline = Date.now() + 10_000; ; ) {
      const l = await cliJson<PluginListAnswer>(["plugin", "list"], { home: two.home });
      const nodes = l.plugins.find((p) => p.name === "echo-fixture")?.nodes ?? [];
      if (nodes.filter((n) => n.status === "loaded").length === 2 || Date.now() > deadline) return l;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  assert.equal(list.cluster?.node, "two");
  assert.deepEqual(
    list.cluster?.nodes.map((n) => n.node),
    ["one", "two"],
  );
  const row = list.plugins.find((p) => p.name === "echo-fixture")!;
  assert.deepEqual(
    row.nodes?.map((n) => [n.node, n.status, n.version]),
    [
      ["one", "loaded", "1.0.0"],
      ["two", "loaded", "1.0.0"],
    ],
  );
  const hello = await fetch(`${two.url}/plugin/echo-fixture/api/hello`);
  assert.equal(hello.status, 200);
  await hello.body?.cancel();

  const table = await runCli(["plugin", "list"], { home: two.home });
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, /cluster: this is node two; nodes: one, two/);
  assert.match(table.stdout, /NAME.*VERSION.*TYPE.*STATUS.*NODES.*ROUTES.*LAST ERROR/);
  assert.match(table.stdout, /echo-fixture.*1\.0\.0.*in_process.*loaded.*one: loaded 1\.0\.0/);
  assert.match(table.stdout, /two: loaded 1\.0\.0/);
});
