/** deploy/hecate.service is a unit systemd accepts, and it starts the daemon through this package's binary. */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const UNIT = fileURLToPath(new URL("../../../../deploy/hecate.service", import.meta.url));

function hasSystemdAnalyze(): boolean {
  try {
    execFileSync("systemd-analyze", ["--version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

test("deploy/hecate.service: systemd-analyze verify accepts it; ExecStart runs `hecate start --json`", async (t) => {
  const unit = readFileSync(UNIT, "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/node \S+\/packages\/cli\/dist\/src\/main\.js start --json$/m);
  assert.match(unit, /^Environment=HECATE_HOME=/m);
  assert.match(unit, /^KillSignal=SIGTERM$/m);
  if (!hasSystemdAnalyze()) {
    t.diagnostic("systemd-analyze not installed: syntax not verified");
    return;
  }
  const result = await new Promise<{ code: number; output: string }>((resolve) => {
    execFile("systemd-analyze", ["verify", UNIT], (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, output: stdout + stderr });
    });
  });
  assert.equal(result.code, 0, result.output);
  assert.doesNotMatch(result.output, /Unknown key|bad unit file/);
});
