/**
 * Load generator run in a child process (so it never shares the daemon's event loop):
 *   node loadgen.js <url> <connections> <durationMs> [request-json]     (SIGTERM: stop early and report)
 * request-json (optional): {"method", "headers", "body"} sent with every request (default a plain GET).
 * Keep-alive undici Pool, one request loop per connection. Prints one JSON line with counts, req/s, latency
 * percentiles and how many responses had each distinct body (capped), so a swap bench can check versions.
 */
import { Pool } from "undici";

const [url, connArg, durArg, reqArg] = process.argv.slice(2);
const request = reqArg
  ? (JSON.parse(reqArg) as { method?: string; headers?: Record<string, string>; body?: string })
  : {};
const u = new URL(url);
const connections = Number(connArg ?? 16);
const durationMs = Number(durArg ?? 5000);
const pool = new Pool(u.origin, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
const path = u.pathname + u.search;
let ok = 0;
let non2xx = 0;
let errors = 0;
const bodies = new Map<string, number>();
const lat: number[] = [];
let until = Date.now() + durationMs;
// SIGTERM = stop now and report (the swap bench runs "until the swaps are done").
process.on("SIGTERM", () => {
  until = 0;
});
const started = performance.now();

async function loop(): Promise<void> {
  while (Date.now() < until) {
    const t0 = performance.now();
    try {
      const r = await pool.request({
        method: (request.method ?? "GET") as "GET",
        path,
        headers: request.headers,
        body: request.body,
      });
      const text = await r.body.text();
      lat.push(performance.now() - t0);
      if (r.statusCode >= 200 && r.statusCode < 300) ok++;
      else non2xx++;
      if (bodies.size < 10 || bodies.has(text)) bodies.set(text, (bodies.get(text) ?? 0) + 1);
    } catch {
      errors++;
    }
  }
}

await Promise.all(Array.from({ length: connections }, loop));
const seconds = (performance.now() - started) / 1000;
await pool.close();
lat.sort((a, b) => a - b);
const pct = (p: number) => lat[Math.min(lat.length - 1, Math.floor(lat.length * p))] ?? 0;
process.stdout.write(
  `${JSON.stringify({ ok, non2xx, errors, rps: ok / seconds, p50_ms: pct(0.5), p99_ms: pct(0.99), bodies: Object.fromEntries(bodies) })}\n`,
);
