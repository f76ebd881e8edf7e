/**
 * Runs one extraction (scanArchive into a disk sink) off the daemon's main thread: the writer's synchronous file
 * I/O then never stalls request handling, and a runaway extraction can be terminated.
 */
import { parentPort, workerData } from "node:worker_threads";
import { PackageError } from "./errors.js";
import { diskSink, type ExtractLimits, scanArchive } from "./scan.js";

export interface ExtractJob {
  archivePath: string;
  limits: ExtractLimits;
  staging: string;
}

export type ExtractReply =
  | { ok: true; stats: Awaited<ReturnType<typeof scanArchive>>; digests: Record<string, string> }
  | { ok: false; code?: PackageError["code"]; message: string; details?: unknown; errno?: string };

const job = workerData as ExtractJob;
let reply: ExtractReply;
try {
  const sink = diskSink(job.staging);
  const stats = await scanArchive(job.archivePath, job.limits, sink);
  reply = { ok: true, stats, digests: sink.digests };
} catch (err) {
  reply =
    err instanceof PackageError
      ? { ok: false, code: err.code, message: err.message, details: err.details }
      : { ok: false, message: (err as Error).message, errno: (err as NodeJS.ErrnoException).code };
}
parentPort!.postMessage(reply);
