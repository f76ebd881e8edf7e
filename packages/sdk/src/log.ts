/**
 * The plugin's logger. Lines go to the plugin's log in the daemon (`hecate plugin logs NAME`, the admin page), tagged
 * with the plugin's name; in a container plugin to stdout/stderr as JSON lines, which the daemon reads into the same
 * log; outside a host (a script, a test without the harness) to stderr.
 *
 *   import { log } from "@hecate/sdk";
 *   log.info("task created", { taskId });
 *   const jobLog = log.child({ job: "cleanup" }); jobLog.warn("slow run", { ms });
 *
 * Fields are plain data (they cross a thread or process boundary): an `Error` becomes `{ name, message, stack }`, a
 * bigint its decimal string, a value that cannot be serialised (a cycle, a function) its `String()`.
 */
import { hostLog, type LogLevel } from "./runtime/hooks.js";

export type { LogLevel };
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line (the line's own fields win). */
  child(fields: LogFields): Logger;
}

/** Writes one line to the plugin's log: what `info`, `warn`... call. */
export function write(level: LogLevel, msg: string, fields?: LogFields): void {
  hostLog(level, typeof msg === "string" ? msg : String(msg), fields && plainFields(fields));
}

/** A logger whose lines all carry `base` fields. */
export function child(base: LogFields): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: LogFields) =>
    write(level, msg, fields ? { ...base, ...fields } : base);
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (more) => child({ ...base, ...more }),
  };
}

const root = child({});
export const debug = root.debug;
export const info = root.info;
export const warn = root.warn;
export const error = root.error;

/** `fields` as JSON-safe data (structured clone would throw on a function and JSON would drop an Error's message). */
export function plainFields(fields: LogFields): LogFields | undefined {
  if (Object.keys(fields).length === 0) return undefined;
  try {
    return JSON.parse(JSON.stringify(fields, replacer)) as LogFields;
  } catch {
    const out: LogFields = {};
    for (const [k, v] of Object.entries(fields)) {
      try {
        out[k] = JSON.parse(JSON.stringify(v, replacer) ?? "null");
      } catch {
        out[k] = String(v);
      }
    }
    return out;
  }
}

function replacer(_key: string, v: unknown): unknown {
  if (v instanceof Error) return { name: v.name, message: v.message, stack: v.stack };
  if (typeof v === "bigint") return v.toString();
  return v;
}
