import assert from "node:assert/strict";
import { test } from "node:test";
import { standaloneConfig } from "../../src/config.js";
import type { PluginModule } from "../../src/contract.js";
import { pluginPaths } from "../../src/paths.js";
import type { WorkerToMain } from "../../src/protocol.js";
import { Dispatcher } from "../../src/runtime/dispatcher.js";

// The daemon drops frames of a connection it has not accepted yet: a greeting sent from onOpen must reach the
// transport only after `ws-accept` (and never for a refused upgrade).
test("frames sent in onOpen are posted after ws-accept; refused upgrades post none", async () => {
  const posted: WorkerToMain[] = [];
  const d = new Dispatcher({ post: (m) => posted.push(m) });
  const mod: PluginModule = {
    manifest: () => ({ name: "greeter", version: "1.0.0" }),
    init() {},
    routes: () => [
      {
        kind: "ws",
        path: "/hi/:who",
        handlers: {
          onOpen(conn) {
            void conn.send(`hello ${conn.params.who}`).catch(() => {});
            return conn.params.who !== "mallory";
          },
        },
      },
    ],
  };
  const base = { t: "ws-open" as const, routeId: 0, query: {}, headers: {}, remoteAddress: "127.0.0.1" };
  // Explicit paths: nothing is created on disk (the plugin has no store and writes nothing).
  const loaded = await d.load(mod, standaloneConfig("greeter", { paths: pluginPaths("/nonexistent-home", "greeter") }));
  assert.equal(loaded.t, "ready");
  d.handle({ ...base, connId: 1, path: "/hi/alice", params: { who: "alice" } });
  d.handle({ ...base, connId: 2, path: "/hi/mallory", params: { who: "mallory" } });
  await new Promise((r) => setImmediate(r));
  const frames = posted.filter((m) => m.t.startsWith("ws-")).map((m) => `${m.t}:${(m as { connId: number }).connId}`);
  assert.deepEqual(frames, ["ws-accept:1", "ws-send:1", "ws-reject:2"]);
  await d.terminate(100);
});
