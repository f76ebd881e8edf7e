/** Shared pieces of the hardening suites: a concurrent /health prober, a control server, latency percentiles. */
import { type ChildProcess, spawn } from "node:child_process";
import { Agent, request } from "undici";

export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
}

export interface ProbeResult {
  samples: number;
  failures: string[];
  p50: number;
  p99: number;
  max: number;
}

/**
 * Hits `url` every `intervalMs` (a new request starts on each tick, not after the previous one ended, so a stalled
 * event loop shows up as latency instead of as fewer samples) until `stop()` resolves the summary.
 */
export function startProber(url: string, intervalMs = 10): { stop(): Promise<ProbeResult> } {
  const agent = new Agent({ connections: 8, keepAliveTimeout: 30_000 });
  const latencies: number[] = [];
  const failures: string[] = [];
  const pending = new Set<Promise<void>>();
  const once = async () => {
    const t0 = performance.now();
    try {
      const r = await request(url, { dispatcher: agent, headersTimeout: 5000, bodyTimeout: 5000 });
      await r.body.text();
      if (r.statusCode !== 200) failures.push(`status ${r.statusCode}`);
    } catch (err) {
      failures.push((err as Error).message);
    }
    latencies.push(performance.now() - t0);
  };
  const timer = setInterval(() => {
    const p = once();
    pending.add(p);
    void p.finally(() => pending.delete(p));
  }, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(pending);
      await agent.close();
      return {
        samples: latencies.length,
        failures,
        p50: percentile(latencies, 0.5),
        p99: percentile(latencies, 0.99),
        max: Math.max(0, ...latencies),
      };
    },
  };
}

/** Polls `cond` (every 10 ms) until true; throws with `what` after `ms`. */
export async function waitUntil(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A bare node:http server in a child process: probed alongside the daemon, it measures what the machine itself
 * (other processes, CPU starvation on a shared 2-core CI box) adds to any latency, so a fault test can tell the
 * daemon stalling from the machine being busy.
 */
export async function startControlServer(): Promise<{ url: string; close(): Promise<void> }> {
  const child: ChildProcess = spawn(
    process.execPath,
    [
      "-e",
      `const s = require("node:http").createServer((q, r) => r.end('{"status":"ok"}'));
       s.listen(0, "127.0.0.1", () => console.log(s.address().port));`,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout!.once("data", (c: Buffer) => resolve(Number(c.toString().trim())));
    child.once("exit", (code) => reject(new Error(`control server exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}/`,
    async close() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGKILL");
      await exited;
    },
  };
}
