/** deploy/hecate.service is a unit systemd accepts, and it starts the daemon through this package's binary. */
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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

const CLUSTER_UNIT = fileURLToPath(new URL("../../../../deploy/cluster/hecate-node@.service", import.meta.url));

test("deploy/cluster/hecate-node@.service: one node per instance on the shared HECATE_STORE_URL; systemd-analyze verify accepts an instance", async (t) => {
  const unit = readFileSync(CLUSTER_UNIT, "utf8");
  assert.match(unit, /^ExecStart=\/usr\/bin\/node \S+\/packages\/cli\/dist\/src\/main\.js start --json$/m);
  assert.match(unit, /^Environment=HECATE_NODE_ID=%i$/m);
  assert.match(unit, /^Environment=HECATE_HOME=\/var\/lib\/hecate\/%i$/m);
  assert.match(unit, /^EnvironmentFile=\/etc\/hecate\/cluster\.env$/m);
  const env = readFileSync(fileURLToPath(new URL("../../../../deploy/cluster/cluster.env", import.meta.url)), "utf8");
  assert.match(env, /^HECATE_STORE_URL=postgres:\/\/\S+$/m);
  if (!hasSystemdAnalyze()) {
    t.diagnostic("systemd-analyze not installed: syntax not verified");
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "hecate-unit-"));
  try {
    const instance = join(dir, "hecate-node@a.service");
    copyFileSync(CLUSTER_UNIT, instance);
    const result = await new Promise<{ code: number; output: string }>((resolve) => {
      execFile("systemd-analyze", ["verify", instance], (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, output: stdout + stderr });
      });
    });
    assert.equal(result.code, 0, result.output);
    assert.doesNotMatch(result.output, /Unknown key|bad unit file/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
