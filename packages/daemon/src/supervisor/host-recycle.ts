/**
 * The two halves of a main-host recycle (PluginHosts.recycle decides when, and switches the connections between
 * them): filling the new host before it takes any connection, and retiring the old one once it took none.
 */
import type { ContainerPluginSpec } from "../container/runtime.js";
import type { HostedSpec, ReconcileOutcome } from "../host/protocol.js";
import type { HostProcess } from "./host-process.js";

/** What `recycle()` did: the main host `oldPid` was replaced by `newPid`. */
export interface RecycleResult {
  reason: string;
  oldPid: number | undefined;
  newPid: number | undefined;
  /** ms from the request until the new host took the connections. */
  switchMs: number;
  /** ms until the old host had drained and exited. */
  ms: number;
  /** False when the old host still had connections at its drain deadline (they were closed). */
  drained: boolean;
  plugins: number;
}

/**
 * Loads a set into a new host: container plugins adopted in one reconcile, in-process plugins 4 at a time, then the
 * proxies of isolated plugins. Throws at the first failure (the caller keeps the old host then).
 */
export async function populateHost(
  fresh: HostProcess,
  containers: ContainerPluginSpec[],
  loads: Exclude<HostedSpec, { kind: "container" }>[],
): Promise<void> {
  if (containers.length) {
    const r = await fresh.request<ReconcileOutcome>({ t: "reconcile", specs: containers });
    if (r.failed.length) throw new Error(`${r.failed[0].name}: ${r.failed[0].error.message}`);
  }
  const queue = loads.flatMap((h) => (h.kind === "remote" ? [] : [h]));
  const lane = async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      const name = next.spec.name;
      await fresh.request({ t: "load", hosted: next }).catch((err: Error) => {
        throw new Error(`${name}: ${err.message}`);
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, queue.length) }, lane));
  for (const remote of loads.filter((h) => h.kind === "remote")) await fresh.request({ t: "load", hosted: remote });
}

/**
 * Lets the old host drain its connections (`retire`: at most `drainMs`, idle ones after `idleGraceMs`), unload and
 * exit; killed if it is not gone 15 s past the drain deadline. True when every connection ended on its own.
 */
export async function retireHost(old: HostProcess, drainMs: number, idleGraceMs: number): Promise<boolean> {
  const exited = new Promise<void>((resolve) => (old.alive ? old.once("exit", () => resolve()) : resolve()));
  const kill = setTimeout(() => old.kill("SIGKILL"), drainMs + 15_000);
  const drained = await old.request<boolean>({ t: "retire", deadlineMs: drainMs, idleGraceMs }).catch(() => false);
  await exited;
  clearTimeout(kill);
  return drained;
}
