import assert from "node:assert/strict";
import { test } from "node:test";
import { isPostgresUnreachable } from "../src/index.js";

const withCode = (code: string) => Object.assign(new Error("x"), { code });

test("isPostgresUnreachable: a server down, starting, full or without our database is worth a retry", () => {
  for (const code of ["ECONNREFUSED", "ETIMEDOUT", "08006", "57P01", "57P03", "57P05", "53300", "3D000", "28P01"])
    assert.equal(isPostgresUnreachable(withCode(code)), true, code);
  assert.equal(isPostgresUnreachable(new Error("Connection terminated unexpectedly")), true);
  assert.equal(isPostgresUnreachable(new Error("timeout exceeded when trying to connect")), true);
});

test("isPostgresUnreachable: SQL errors and everything else are not", () => {
  for (const code of ["23505", "42P01", "40001", "53100", "P0001"])
    assert.equal(isPostgresUnreachable(withCode(code)), false, code);
  assert.equal(isPostgresUnreachable(new Error("syntax error")), false);
  assert.equal(isPostgresUnreachable(undefined), false);
  assert.equal(isPostgresUnreachable(null), false);
});
