// Runs the plugin in-process through the same dispatcher the daemon uses: `npm test` (compiles, then node --test).
import assert from "node:assert/strict";
import { test } from "node:test";
import { createTestHarness } from "@hecate/sdk";
import * as plugin from "../src/index.js";

type Note = { id: string; text: string };

test("GET /hello greets", async (t) => {
  const h = await createTestHarness(plugin);
  t.after(() => h.close());
  const r = await h.request("GET", "/hello?name=hecate");
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, { hello: "hecate", plugin: "{{name}}" });
});

test("notes: create, read, validation, not found", async (t) => {
  const h = await createTestHarness(plugin);
  t.after(() => h.close());
  const created = await h.request("POST", "/notes", { body: { text: "first" } });
  assert.equal(created.status, 201);
  const read = await h.request("GET", `/notes/${(created.body as Note).id}`);
  assert.deepEqual(read.body, created.body);
  const bad = await h.request("POST", "/notes", { body: { text: "" } });
  assert.equal(bad.status, 400);
  assert.equal((bad.body as { error: { code: string } }).error.code, "invalid_note");
  assert.equal((await h.request("GET", "/notes/999")).status, 404);
});
