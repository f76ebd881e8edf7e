/** What the benches share: the keep-alive load generator run in a child process (loadgen.ts), percentiles, rounding. */
import { spawn } from "node:child_process";

export interface LoadResult {
  ok: number;
  non2xx: number;
  errors: number;
  rps: number;
  p50_ms: number;
  p99_ms: number;
  /** How many responses had each distinct body (capped): a swap bench checks versions with it. */
  bodies: Record<string, number>;
}

/** What every request of a load run sends (default: a plain GET). */
export interface LoadRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Runs loadgen.js against `url` for `durationMs` (or until the stop function given to `onChild` is called). */
export function loadgen(
  url: string,
  connections: number,
  durationMs: number,
  onChild?: (stop: () => void) => void,
  request?: LoadRequest,
): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        new URL("./loadgen.js", import.meta.url).pathname,
        url,
        String(connections),
        String(durationMs),
        ...(request ? [JSON.stringify(request)] : []),
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    onChild?.(() => child.kill("SIGTERM"));
    let out = "";
    child.stdout.on("data", (c) => {
      out += c;
    });
    child.on("close", (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`loadgen exit ${code}`))));
  });
}

/** The p-quantile (0..1) of `xs`. */
export function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0;
}

export const round = (x: number, d = 2): number => Math.round(x * 10 ** d) / 10 ** d;
