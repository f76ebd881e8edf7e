/**
 * Small seams between SDK helpers and the dispatcher that hosts the plugin: helpers that own timers or resources
 * register a terminate hook (run by the dispatcher at unload, after the plugin's own `terminate()`), and log through
 * the host's plugin log. One plugin per worker (or container), so module state here is per plugin; in a test process
 * running several harnesses it is shared by them.
 */
export type LogLevel = "debug" | "info" | "warn" | "error";
type LogSink = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

const terminateHooks = new Set<() => unknown>();
let sink: LogSink | undefined;

/** Runs `fn` when the plugin is unloaded (within the unload deadline). Returns a function that unregisters it. */
export function onTerminate(fn: () => unknown): () => void {
  terminateHooks.add(fn);
  return () => terminateHooks.delete(fn);
}

/** For the dispatcher: runs (and forgets) every terminate hook; a failing hook is logged, not thrown. */
export async function runTerminateHooks(): Promise<void> {
  const hooks = [...terminateHooks];
  terminateHooks.clear();
  await Promise.all(
    hooks.map(async (fn) => {
      try {
        await fn();
      } catch (err) {
        hostLog("error", `terminate hook failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }),
  );
}

/** For the dispatcher: where `hostLog` goes (the plugin's log in the daemon). */
export function setLogSink(fn: LogSink | undefined): void {
  sink = fn;
}

/** Logs to the host's plugin log; outside a host, to stderr. */
export function hostLog(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
  if (sink) sink(level, msg, fields);
  else console.error(`[${level}] ${msg}`, fields ?? "");
}
