/** packages/daemon/openapi.json is a valid OpenAPI 3.1 document (checked against the specification's JSON Schema). */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { Validator } from "@seriousme/openapi-schema-validator";

const OPENAPI = fileURLToPath(new URL("../../../daemon/openapi.json", import.meta.url));

test("openapi.json validates as OpenAPI 3.1 and resolves every $ref", async () => {
  const validator = new Validator();
  const doc = JSON.parse(readFileSync(OPENAPI, "utf8"));
  const result = await validator.validate(doc);
  assert.equal(validator.version, "3.1");
  assert.deepEqual(result.errors ?? [], []);
  assert.equal(result.valid, true);
  // every $ref points at something that exists
  const refs = JSON.stringify(doc).match(/"\$ref":"#\/[^"]+"/g) ?? [];
  for (const ref of new Set(refs)) {
    const path = ref.slice(9, -1).split("/").slice(1);
    let node: unknown = doc;
    for (const p of path) node = (node as Record<string, unknown>)?.[p];
    assert.ok(node, `${ref} resolves`);
  }
});
