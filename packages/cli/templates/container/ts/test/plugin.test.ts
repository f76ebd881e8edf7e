// Runs the plugin module in-process (no container needed): `npm test` (compiles, then node --test).
import assert from "node:assert/strict";
import { test } from "node:test";
import { createTestHarness } from "@hecate/sdk";
import * as plugin from "../src/plugin.js";

test("GET /hello answers from the plugin", async (t) => {
  const h = await createTestHarness(plugin);
  t.after(() => h.close());
  const r = await h.request("GET", "/hello?name=hecate");
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { hello: "hecate", from: "a container" });
});

test("POST /sum adds numbers and refuses bad input", async (t) => {
  const h = await createTestHarness(plugin);
  t.after(() => h.close());
  assert.deepEqual((await h.request("POST", "/sum", { body: { numbers: [1, 2, 3.5] } })).body, { sum: 6.5 });
  const bad = await h.request("POST", "/sum", { body: { numbers: ["x"] } });
  assert.equal(bad.status, 400);
  assert.equal((bad.body as { error: { code: string } }).error.code, "invalid_numbers");
});
