/**
 * packages/daemon/openapi.json lints clean with Redocly's linter (the repository's redocly.yaml: the strict ruleset,
 * the deliberate exceptions in .redocly.lint-ignore.yaml), and the linter does fail on a broken document.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { OPENAPI_FILE } from "./openapi-check.js";

const ROOT = fileURLToPath(new URL("../../../../../", import.meta.url));
const REDOCLY = join(ROOT, "node_modules", "@redocly", "cli", "bin", "cli.js");

interface LintReport {
  totals: { errors: number; warnings: number; ignored: number };
  problems: { ruleId: string; message: string; location: { pointer: string }[] }[];
}

/** `redocly lint --format=json` (no telemetry, no update check: no network). */
function lint(args: string[]): Promise<{ code: number; report: LintReport }> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [REDOCLY, "lint", "--format=json", ...args],
      {
        cwd: ROOT,
        env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true", CI: "true" },
        maxBuffer: 16 * 1024 * 1024,
        timeout: 120_000,
      },
      (err, stdout, stderr) => {
        try {
          resolve({ code: err ? Number(err.code) : 0, report: JSON.parse(stdout) as LintReport });
        } catch {
          reject(new Error(`redocly lint printed no JSON report (${err?.message}):\n${stdout}\n${stderr}`));
        }
      },
    );
  });
}

const describe = (r: LintReport) =>
  r.problems.map((p) => `${p.ruleId} at ${p.location[0]?.pointer}: ${p.message}`).join("\n");

test("openapi.json lints clean (redocly, recommended-strict)", async () => {
  const { code, report } = await lint([]);
  assert.equal(report.totals.errors + report.totals.warnings, 0, describe(report));
  assert.equal(code, 0);
});

test("the linter fails a document that breaks its rules", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hecate-lint-"));
  try {
    const doc = JSON.parse(readFileSync(OPENAPI_FILE, "utf8"));
    delete doc.paths["/admin/api/plugins"].get.responses["200"].description; // required by the specification
    doc.paths["/admin/api/plugins"].get.responses["200"].content["application/json"].schema.properties.plugins.items = {
      $ref: "#/components/schemas/NoSuchSchema",
    };
    const file = join(dir, "openapi.json");
    writeFileSync(file, JSON.stringify(doc));
    const { code, report } = await lint([file, "--extends=recommended-strict"]);
    assert.notEqual(code, 0);
    const rules = new Set(report.problems.map((p) => p.ruleId));
    assert.ok(rules.has("no-unresolved-refs"), describe(report));
    assert.ok(rules.has("struct"), describe(report));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
