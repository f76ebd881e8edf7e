/**
 * One in-process plugin's SDK cannot open another plugin's store: not with a hostile storeId, not by rewriting its
 * own config (setConfig) before or after its store is opened. Real workers, real SQLite stores.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { PluginLoadError } from "../../src/worker/worker-plugins.js";
import { type Env, json, raw, setup, writePlugin } from "../worker/helpers.js";

let env: Env;

const VICTIM = `
import { store } from "@hecate/sdk";
export function manifest() { return { name: "victim", version: "1.0.0" }; }
export function storeConfig() { return {}; }
export async function init() {
  await store.eventStore().append("secrets-1", [{ type: "secret_v1", data: { pin: "4711" } }]);
}
export function routes() {
  return [{ method: "GET", path: "/count", handler: async () => ({ n: (await store.readStream("secrets-1")).length }) }];
}
`;

/** A plugin whose /steal route tries `attempt` and reports what it could read (or the error code). */
function thief(name: string, attempt: string, withStore: boolean): string {
  return `
import { store, getConfig, pluginPaths } from "@hecate/sdk";
// Not re-exported by the index, but any module of the package is importable through its "./*" export.
import { setConfig } from "@hecate/sdk/config";
import { dirname } from "node:path";
export function manifest() { return { name: ${JSON.stringify(name)}, version: "1.0.0" }; }
${withStore ? "export function storeConfig() { return {}; }" : ""}
export function init() {}
const victimPaths = () => pluginPaths(dirname(dirname(getConfig().paths.root)), "victim");
export function routes() {
  return [{ method: "GET", path: "/steal", handler: async () => {
    try {
      ${attempt}
      const events = await store.readStream("secrets-1");
      return { stolen: events.map((e) => e.data) };
    } catch (err) {
      return { refused: err.code ?? err.name, message: err.message };
    }
  } }];
}
`;
}

before(async () => {
  env = await setup();
  await env.workers.load(writePlugin(env.home, "victim", "1.0.0", VICTIM));
  assert.equal(json(await raw(env.port, "GET", "/plugin/victim/api/count")).n, 1);
});
after(() => env.close());

test("a storeId that walks out of the plugin's store dir fails the load at stage store", async () => {
  for (const storeId of ["../../victim/store/victim", "/abs/victim", "victim/../x", ""]) {
    const code = `
export function manifest() { return { name: "sneaky", version: "1.0.0" }; }
export function storeConfig() { return { storeId: ${JSON.stringify(storeId)} }; }
export function init() {}
`;
    await assert.rejects(
      env.workers.load(writePlugin(env.home, "sneaky", "1.0.0", code)),
      (e: unknown) => e instanceof PluginLoadError && e.stage === "store",
      storeId,
    );
  }
});

test("a plugin cannot re-point its SDK config at another plugin's store", async () => {
  const attempts: [string, string, boolean][] = [
    ["no-store", `setConfig({ ...getConfig(), standalone: true, storeId: "victim", paths: victimPaths() });`, false],
    ["reopen", `await store.close(); setConfig({ ...getConfig(), storeId: "victim", paths: victimPaths() });`, true],
    ["same-id", `await store.close(); setConfig({ ...getConfig(), storeId: "victim" });`, true],
  ];
  const outcomes: Record<string, unknown> = {};
  for (const [label, attempt, withStore] of attempts) {
    const name = `thief-${label}`;
    await env.workers.load(writePlugin(env.home, name, "1.0.0", thief(name, attempt, withStore)));
    const r = json(await raw(env.port, "GET", `/plugin/${name}/api/steal`));
    outcomes[label] = r;
    assert.ok(!JSON.stringify(r).includes("4711"), `${label}: read the victim's events: ${JSON.stringify(r)}`);
    await env.workers.unload(name);
  }
  console.log(`# store isolation outcomes ${JSON.stringify(outcomes)}`);
  // The victim's store is intact and still its own.
  assert.equal(json(await raw(env.port, "GET", "/plugin/victim/api/count")).n, 1);
});
