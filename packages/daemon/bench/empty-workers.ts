/**
 * The floor under the boot bench (boot.ts runs this in a process of its own): N EMPTY Node worker threads (an ES
 * module that answers one message and stays idle, as a plugin's worker does), started with the loader's
 * concurrency, in a process that does nothing else. No plugin host can start N one-isolate-per-plugin workers in
 * less CPU, time or memory than this on the same machine.
 * Usage: node empty-workers.js N; prints one JSON line: { ms, cpuMs, rssMiBPerWorker }.
 */
import { readFileSync } from "node:fs";
import { Worker } from "node:worker_threads";
import { DEFAULT_LOAD_CONCURRENCY } from "../src/lifecycle/loader.js";

const n = Number(process.argv[2]);
if (!Number.isSafeInteger(n) || n < 1) throw new Error("usage: empty-workers.js N");

const EMPTY = `import { parentPort } from "node:worker_threads";
parentPort.on("message", (m) => parentPort.postMessage(m));
parentPort.postMessage("ready");`;

const rssMiB = () => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"))![1]) / 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

await sleep(500);
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
const ms = performance.now() - t0;
const c = process.cpuUsage(c0);
// Idle a while, as the boot bench does before it samples a host's RSS.
await sleep(1500);
const rss = rssMiB();
console.log(JSON.stringify({ ms, cpuMs: (c.user + c.system) / 1000, rssMiBPerWorker: (rss - rss0) / n }));
await Promise.all(workers.map((w) => w.terminate()));
