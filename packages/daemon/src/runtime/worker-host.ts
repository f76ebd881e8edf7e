/**
 * Runs inside each plugin's worker thread. Thin on purpose: everything plugin-facing is the SDK dispatcher, so
 * the daemon, the test harness and the container entry behave alike. The dispatcher calls `setConfig` before
 * `init`, on the same `@hecate/sdk` instance the plugin imports (see sdk-link.ts).
 */

import { pathToFileURL } from "node:url";
import { parentPort, workerData } from "node:worker_threads";
import { sealConfigOnNextSet } from "@hecate/sdk/config";
import type { MainToWorker, WorkerBoot } from "@hecate/sdk/protocol";
import { Dispatcher } from "@hecate/sdk/runtime/dispatcher";

const port = parentPort!;
const boot = workerData as WorkerBoot;
const dispatcher = new Dispatcher({ post: (msg, transfer) => port.postMessage(msg, transfer ?? []) });

// A stray rejection is a plugin bug, not a reason to kill its other requests: report it and keep serving.
process.on("unhandledRejection", (reason) => {
  dispatcher.log("error", `unhandled rejection: ${reason instanceof Error ? reason.message : String(reason)}`, {
    stack: reason instanceof Error ? reason.stack : undefined,
  });
});

port.on("message", (msg: MainToWorker) => dispatcher.handle(msg));
// The dispatcher's setConfig (before init) is final: see sealConfigOnNextSet.
sealConfigOnNextSet();
const result = await dispatcher.load(() => import(pathToFileURL(boot.entry).href), boot.config);
port.postMessage(result);
