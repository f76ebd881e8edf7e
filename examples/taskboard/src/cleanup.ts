/**
 * The scheduled cleanup: deletes tasks completed longer ago than `retentionHours` (through the task aggregate, so
 * the deletion is an event like any other and live boards see it) and removes attachment files nothing refers to
 * any more (files of deleted tasks, uploads whose task vanished meanwhile).
 */
import { readdir, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { files } from "@hecate/sdk";
import { completedBefore, referencedFileIds } from "./read-model.js";
import { taskCommand } from "./service.js";
import { settings } from "./settings.js";

/** Uploaded but not yet attached files younger than this are left alone (an upload in progress). */
const ORPHAN_GRACE_MS = 60_000;
/** Partial files (`.part-*`) of uploads interrupted by a crash, older than this, are removed. */
const STALE_PART_MS = 3_600_000;
const BATCH = 500;

export interface CleanupResult {
  deletedTasks: number;
  removedFiles: number;
}

export async function runCleanup(signal?: AbortSignal, now = Date.now()): Promise<CleanupResult> {
  const result: CleanupResult = { deletedTasks: 0, removedFiles: 0 };
  const cutoff = new Date(now - settings().retentionHours * 3_600_000).toISOString();
  for (;;) {
    const due = completedBefore(cutoff, BATCH);
    for (const t of due) {
      if (signal?.aborted) return result;
      // The command id makes a retried run (after a crash) a no-op for tasks it already deleted.
      await taskCommand(t.id, { id: `retention:${t.id}`, type: "delete_task_v1", data: { reason: "retention" } });
      result.deletedTasks++;
    }
    if (due.length < BATCH) break;
  }
  const dir = files.uploadDir();
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return result; // nothing uploaded yet
  }
  const referenced = referencedFileIds();
  for (const name of entries) {
    if (signal?.aborted) break;
    if (referenced.has(name)) continue;
    const path = join(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile()) continue;
    const age = now - info.mtimeMs;
    if (name.startsWith(".part-")) {
      if (
        age > STALE_PART_MS &&
        (await unlink(path).then(
          () => true,
          () => false,
        ))
      )
        result.removedFiles++;
    } else if (age > ORPHAN_GRACE_MS && (await files.remove(name))) result.removedFiles++;
  }
  return result;
}
