/** PullProgress on a real temp dir laid out as Podman's big-files temp dir (`storage*` dirs holding blob files). */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PullProgress } from "../../src/container/pull-progress.js";

test("a claimed storage dir that disappears (another pull committed) is given up for the next fresh one", () => {
  const tmp = mkdtempSync(join(tmpdir(), "hecate-pull-progress-"));
  try {
    mkdirSync(join(tmp, "storage-old")); // there before the pull: never claimed
    writeFileSync(join(tmp, "storage-old", "blob"), Buffer.alloc(4096));
    const progress = new PullProgress({ layers: 1, bytes: 1024 * 1024 }, tmp);
    // Another process's pull creates its dir first: this pull claims it.
    mkdirSync(join(tmp, "storage-other"));
    writeFileSync(join(tmp, "storage-other", "blob"), Buffer.alloc(1000));
    progress.sample();
    assert.equal(progress.snapshot().bytes_done, 1000);
    // That pull commits (its dir goes); this pull's own dir appears and fills.
    rmSync(join(tmp, "storage-other"), { recursive: true });
    mkdirSync(join(tmp, "storage-own"));
    writeFileSync(join(tmp, "storage-own", "blob"), Buffer.alloc(200 * 1024));
    progress.sample(); // finds the claimed dir gone
    progress.sample(); // claims the fresh one
    assert.equal(progress.snapshot().bytes_done, 200 * 1024);
    writeFileSync(join(tmp, "storage-own", "blob2"), Buffer.alloc(100 * 1024));
    progress.sample();
    assert.equal(progress.snapshot().bytes_done, 300 * 1024);
    assert.equal(progress.snapshot().layers_done, 0);
    progress.take({ stream: "Copying config sha256:abc\n" });
    assert.deepEqual(progress.snapshot(), { layers_done: 1, bytes_done: 1024 * 1024 });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
