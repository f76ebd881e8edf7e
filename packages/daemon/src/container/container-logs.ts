/**
 * A container's output as the plugin's log: followed from each start, restart or adoption into `log` events (the
 * SDK's JSON lines keep their level and fields), and its last lines for a load failure's error.
 */
import type { Emit, Entry } from "./container-entry.js";
import type { ContainerEvent } from "./container-types.js";
import type { PodmanClient } from "./podman.js";

const MAX_LOG_LINE = 16 * 1024;

/** Streams the container's output from `sinceMs` into `log` events until it stops (a restart follows anew). */
export function followLogs(podman: Pick<PodmanClient, "followLogs">, e: Entry, sinceMs: number, emit: Emit): void {
  e.logs?.abort();
  const ac = new AbortController();
  e.logs = ac;
  const plugin = e.spec.name;
  void podman
    .followLogs(e.containerId, sinceMs / 1000, (stream, line) => emit(logEvent(plugin, stream, line)), ac.signal)
    .catch(() => {}); // ends with the container or at abort; nothing to report
}

/** The container's last log lines (PodmanClient.logs), "" when they cannot be read. */
export async function lastLogLines(podman: Pick<PodmanClient, "logs">, id: string): Promise<string> {
  try {
    return (await podman.logs(id)).trim();
  } catch {
    return "";
  }
}

/** One printed line as a log event: the SDK prints `{"level","msg",...fields}` JSON lines; anything else is text. */
function logEvent(plugin: string, stream: "stdout" | "stderr", raw: string): ContainerEvent {
  const line = raw.length > MAX_LOG_LINE ? `${raw.slice(0, MAX_LOG_LINE)}…` : raw;
  if (line.startsWith("{")) {
    try {
      const { level, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
      if (typeof level === "string" && typeof msg === "string")
        return { type: "log", plugin, level, msg, ...(Object.keys(fields).length ? { fields } : {}) };
    } catch {}
  }
  return { type: "log", plugin, level: stream === "stderr" ? "error" : "info", msg: line };
}
