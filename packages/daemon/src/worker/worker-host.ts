/**
 * Runs inside each plugin's worker thread. Thin on purpose: everything plugin-facing is the SDK dispatcher, so
 * the daemon, the test harness and the container entry behave alike. The dispatcher calls `setConfig` before
 * `init`, on the same `@hecate/sdk` instance the plugin imports (see sdk-link.ts).
 */

import { pathToFileURL } from "node:url";
import { parentPort, workerData } from "node:worker_threads";
import type { MainToWorker, WorkerBoot, WorkerToMain } from "@hecate/sdk/protocol";
import { guardChildProcesses } from "./child-guard.js";
import { captureConsole } from "./console-capture.js";
import { MessageBatcher, unbatch } from "./message-batch.js";

/**
 * The SDK entry points this host uses, as the file URLs the main thread resolved once (plugin-worker.ts): imported
 * by URL, each worker skips resolving `@hecate/sdk/...` through the package's exports map (about 0.2 MiB of RSS and
 * a few ms of start-up per worker). They are the real files the plugin's own `@hecate/sdk` import reaches (Node
 * resolves symlinks to real paths), so both see ONE instance of each module.
 */
export interface SdkUrls {
  config: string;
  dispatcher: string;
}

export interface HostBoot extends WorkerBoot {
  sdk: SdkUrls;
}

const port = parentPort!;
const boot = workerData as HostBoot;
const [{ sealConfigOnNextSet }, { Dispatcher }] = await Promise.all([
  import(boot.sdk.config) as Promise<typeof import("@hecate/sdk/config")>,
  import(boot.sdk.dispatcher) as Promise<typeof import("@hecate/sdk/runtime/dispatcher")>,
]);
/** Replies, batched per turn; a batch open 20 µs goes at the next post (a heavy handler holds no earlier reply). */
const batch = new MessageBatcher<WorkerToMain>((msgs, transfer) => port.postMessage(msgs, transfer), 0.02);
// Every process the plugin starts is reported at once (not batched: it must reach the main thread even if the
// worker dies in this very turn) and its process group is killed when the worker ends (see child-guard.ts).
const children = guardChildProcesses((m) => port.postMessage(m));
/** When the main thread wants the worker gone (`terminate` carries the deadline). */
let terminateBy = 0;
const dispatcher = new Dispatcher(
  {
    post: (msg, transfer) => {
      if (msg.t !== "terminated" || children.groups.size === 0) return batch.post(msg, transfer);
      // The plugin's terminate() has run: stop what it left running before reporting `terminated` (after which the
      // main thread ends this worker), within half of what is left of the deadline.
      const graceMs = Math.min(2000, Math.max(100, (terminateBy - Date.now()) / 2));
      void children.stopAll(graceMs).finally(() => batch.post(msg, transfer));
    },
  },
  { maxReplyBytes: boot.maxReplyBytes },
);
// What the plugin prints (console.*, process.stdout/stderr) goes to its plugin log, tagged with its name by the host.
const flushConsole = captureConsole((level, msg, fields) => dispatcher.log(level, msg, fields));
// Whatever was posted in the last turn (a log line before process.exit...) still goes out.
process.on("exit", () => {
  flushConsole();
  batch.flush();
});

// A stray rejection is a plugin bug, not a reason to kill its other requests: report it and keep serving.
process.on("unhandledRejection", (reason) => {
  dispatcher.log("error", `unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}`, {
    stack: reason instanceof Error ? reason.stack : undefined,
  });
});

const handle = (msg: MainToWorker) => {
  if (msg.t === "terminate") terminateBy = Date.now() + msg.deadlineMs;
  dispatcher.handle(msg);
};
port.on("message", (data: MainToWorker | MainToWorker[]) => unbatch(data, handle));
// The dispatcher's setConfig (before init) is final: see sealConfigOnNextSet.
sealConfigOnNextSet();
const result = await dispatcher.load(() => import(pathToFileURL(boot.entry).href), boot.config);
batch.post(result); // behind the load's log lines, as before
