/**
 * A refusal is durable before its file goes: main.js as a child, kill -9 right after package_rejected_v1 was appended
 * (test hook HECATE_TEST_CRASH_AFTER): the refused upload is still in run/ (the append came first), and after a
 * restart the refusal is listed by GET /admin/api/rejections while the boot sweep removed the upload.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { type ChildDaemon, spawnDaemon, unixRequest } from "./helpers.js";

const work = mkdtempSync(join(tmpdir(), "hecate-rejrec-"));
const children: ChildDaemon[] = [];
after(() => {
  for (const c of children) if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
  rmSync(work, { recursive: true, force: true });
});

const uploads = (home: string) => readdirSync(join(home, "run")).filter((f) => f.startsWith("incoming-"));

test("kill -9 right after package_rejected_v1: the refusal survives, the upload is swept at the next boot", async () => {
  const home = join(work, "home");
  const bytes = Buffer.from("this is not a package\n");
  const crashing = spawnDaemon(home, { HECATE_TEST_CRASH_AFTER: "package_rejected_v1" });
  children.push(crashing);
  await crashing.url;
  await unixRequest(crashing.socketPath, "POST", "/admin/api/plugins", bytes, {
    "content-type": "application/gzip",
  }).catch(() => null); // the daemon dies while answering
  assert.equal((await crashing.exited).signal, "SIGKILL", crashing.output());
  assert.equal(uploads(home).length, 1, "the upload must outlive the append, not the other way round");

  const c = spawnDaemon(home);
  children.push(c);
  await c.url;
  const r = await unixRequest(c.socketPath, "GET", "/admin/api/rejections");
  assert.equal(r.status, 200, r.body);
  const { rejections } = JSON.parse(r.body) as { rejections: { code: string; sha256: string; bytes: number }[] };
  assert.deepEqual(
    rejections.map((x) => [x.code, x.sha256, x.bytes]),
    [["not_gzip", createHash("sha256").update(bytes).digest("hex"), bytes.length]],
  );
  assert.deepEqual(uploads(home), [], "the boot sweep removes the refused upload");
  c.child.kill("SIGTERM");
  assert.equal((await c.exited).code, 0, c.output());
});
