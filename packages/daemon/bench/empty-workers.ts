/**
 * The floor under the boot bench (boot.ts runs this in a process of its own): N EMPTY Node worker threads (an ES
 * module that answers one message and stays idle, as a plugin's worker does), started with the loader's
 * concurrency, in a process that does nothing else. No plugin host can start N one-isolate-per-plugin workers in
 * less CPU, time or memory than this on the same machine.
 * Usage: node empty-workers.js N [AFTER_BOOT_MS [IDLE_MS]]; prints one JSON line: { ms, cpuMs, rssMiBPerWorker,
 * idleRssMiBPerWorker } (RSS per worker AFTER_BOOT_MS after all are ready, and IDLE_MS after, when IDLE_MS > 0).
 */
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { DEFAULT_LOAD_CONCURRENCY } from "../src/lifecycle/loader.js";

const n = Number(process.argv[2]);
const afterBootMs = Number(process.argv[3] ?? 1500);
const idleMs = Number(process.argv[4] ?? 0);
if (!Number.isSafeInteger(n) || n < 1 || !(afterBootMs >= 0) || !(idleMs >= 0))
  throw new Error("usage: empty-workers.js N [AFTER_BOOT_MS [IDLE_MS]]");

const EMPTY = `import { parentPort } from "node:worker_threads";
parentPort.on("message", (m) => parentPort.postMessage(m));
parentPort.postMessage("ready");`;

const rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// The process's own baseline: settled as long as the workers will be (V8 shrinks an idle heap after some seconds).
await sleep(idleMs > 0 ? idleMs : 500);
const rss0 = rssMiB();
const workers: Worker[] = [];
const c0 = process.cpuUsage();
const t0 = performance.now();
let next = 0;
await Promise.all(
  Array.from({ length: Math.min(n, DEFAULT_LOAD_CONCURRENCY) }, async () => {
    while (next < n) {
      next++;
      const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(EMPTY)}`), { execArgv: [] });
      workers.push(w);
      await new Promise((resolve, reject) => {
        w.once("message", resolve);
        w.once("error", reject);
      });
    }
  }),
);
const ready = performance.now();
const ms = ready - t0;
const c = process.cpuUsage(c0);
// Sampled as the boot bench samples a host's RSS: after boot, and (when asked) once idle.
await sleep(afterBootMs);
const rss = rssMiB();
await sleep(Math.max(0, ready + idleMs - performance.now()));
const idleRss = idleMs > 0 ? rssMiB() : Number.NaN;
console.log(
  JSON.stringify({
    ms,
    cpuMs: (c.user + c.system) / 1000,
    rssMiBPerWorker: (rss - rss0) / n,
    idleRssMiBPerWorker: (idleRss - rss0) / n,
  }),
);
await Promise.all(workers.map((w) => w.terminate()));
