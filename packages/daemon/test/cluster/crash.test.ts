/**
 * Cluster mode, kill -9 in the middle of a rollout: A (a main.js child) accepts an install and is SIGKILLed right
 * after recording plugin_installed_v1 (test hook), B (a child) is SIGKILLed at that moment too, before it could carry
 * the install out; C (in this process) carries it out alone. Both killed nodes restart on their homes and converge:
 * all three serve the plugin, and the shared stream holds each lifecycle step once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type PgServer, startPostgres } from "@hecate/store/testing/postgres";
import { buildPackage, type ChildDaemon, spawnDaemon, type TestDaemon, until } from "../lifecycle/helpers.js";
import { count, sharedTypes, startNode, untilServed } from "./helpers.js";

let server: PgServer;
let work: string;
const children: ChildDaemon[] = [];
let c: TestDaemon | undefined;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "hecate-cluster-crash-"));
  server = await startPostgres();
});
after(async () => {
  for (const ch of children) if (ch.child.exitCode === null && ch.child.signalCode === null) ch.child.kill("SIGKILL");
  await Promise.all(children.map((ch) => ch.exited));
  await c?.stop();
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

function node(id: string, env: Record<string, string> = {}): ChildDaemon {
  const d = spawnDaemon(join(work, `home-${id}`), { HECATE_STORE_URL: server.url, HECATE_NODE_ID: id, ...env });
  children.push(d);
  return d;
}

async function adminUrl(d: ChildDaemon): Promise<string> {
  await d.url;
  return until(() => /hecate admin on (\S+)/.exec(d.output())?.[1] ?? "", 5000, "admin url");
}

test("kill -9 of the accepting node and of another node mid-rollout: after restart every node converges", async () => {
  const archive = await buildPackage(work, { name: "crashy", version: "1.0.0" });
  const a = node("a", { HECATE_TEST_CRASH_AFTER: "plugin_installed_v1" });
  const b = node("b");
  c = await startNode(work, server.url, "c");
  const [aAdmin] = await Promise.all([adminUrl(a), b.url]);
  const token = readFileSync(join(work, "home-a", "run", "admin.token"), "utf8").trim();

  // A dies right after recording the install (the upload never gets an answer); B is killed at that moment
  const killB = a.exited.then(() => b.child.kill("SIGKILL"));
  await fetch(`${aAdmin}/admin/api/plugins`, {
    method: "POST",
    body: readFileSync(archive),
    headers: { authorization: `Bearer ${token}`, "content-type": "application/gzip" },
  }).then(
    (r) => assert.fail(`A answered ${r.status} instead of dying`),
    () => {},
  );
  assert.equal((await a.exited).signal, "SIGKILL");
  await killB;
  assert.equal((await b.exited).signal, "SIGKILL");

  // C carries the install out alone
  await untilServed([c], "crashy", "1.0.0", 20_000);

  // both restart on their homes and converge
  const [a2, b2] = [node("a"), node("b")];
  const urls = await Promise.all([a2.url, b2.url]);
  await untilServed(
    urls.map((url) => ({ url })),
    "crashy",
    "1.0.0",
    20_000,
  );
  const types = await sharedTypes(server.url, "crashy");
  for (const type of ["plugin_installed_v1", "plugin_package_extracted_v1", "plugin_activated_v1"])
    assert.equal(count(types, type), 1, `${type} once: ${types.join(",")}`);
  assert.equal(count(types, "plugin_load_confirmed_v1"), 1, types.join(","));
  const statuses = await until(
    async () => {
      const list = await (await c!.api("GET", "/admin/api/plugins")).json();
      const nodes = list.plugins.find((p: { name: string }) => p.name === "crashy").nodes as { status: string }[];
      return nodes.length === 3 && nodes.every((n) => n.status === "loaded") ? nodes : null;
    },
    10_000,
    "3 nodes loaded in the list",
  );
  assert.equal(statuses?.length, 3);
});
