/**
 * Inside a plugin's worker: what the plugin prints goes to its plugin log (`hecate plugin logs NAME`), not to the
 * daemon's stdout. `console.debug/trace/log/info/warn/error` keep their level (debug, info, warn, error); anything
 * else written to `process.stdout` / `process.stderr` (console.table/dir, direct writes) is logged line by line as
 * info / error. Not a library: Node has no hook for a worker's console, so the console methods and the two streams'
 * `write` are replaced here.
 */
import { formatWithOptions } from "node:util";

type Level = "debug" | "info" | "warn" | "error";
type Sink = (level: Level, msg: string, fields?: Record<string, unknown>) => void;

/** Longest line kept (as for container plugins' printed lines); longer ones are cut with an ellipsis. */
export const MAX_LOG_LINE = 16 * 1024;

const METHODS: [keyof Console, Level][] = [
  ["debug", "debug"],
  ["trace", "debug"],
  ["log", "info"],
  ["info", "info"],
  ["warn", "warn"],
  ["error", "error"],
];

const cut = (s: string) => (s.length > MAX_LOG_LINE ? `${s.slice(0, MAX_LOG_LINE)}…` : s);

/** Routes this thread's console and stdout/stderr into `sink`. Returns `flush` (a last unterminated line). */
export function captureConsole(sink: Sink): () => void {
  for (const [method, level] of METHODS) {
    const fn = (...args: unknown[]) => {
      const msg = cut(formatWithOptions({ colors: false }, ...args));
      if (method !== "trace") return sink(level, msg);
      // console.trace: the caller's stack, without this frame
      const stack = new Error().stack?.split("\n").slice(2).join("\n");
      sink(level, `Trace: ${msg}`, { stack });
    };
    (console as unknown as Record<string, unknown>)[method] = fn;
  }
  const flushes = [lineWriter(process.stdout, "info", sink), lineWriter(process.stderr, "error", sink)];
  return () => {
    for (const f of flushes) f();
  };
}

function lineWriter(stream: NodeJS.WritableStream, level: Level, sink: Sink): () => void {
  let pending = "";
  const flush = () => {
    if (pending) sink(level, cut(pending));
    pending = "";
  };
  stream.write = ((chunk: string | Uint8Array, encoding?: unknown, cb?: unknown) => {
    pending += typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
      sink(level, cut(pending.slice(0, nl)));
      pending = pending.slice(nl + 1);
    }
    if (pending.length > MAX_LOG_LINE) flush();
    const done = typeof encoding === "function" ? encoding : cb;
    if (typeof done === "function") queueMicrotask(() => done());
    return true;
  }) as typeof stream.write;
  return flush;
}
