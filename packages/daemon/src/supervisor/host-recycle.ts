/**
 * Zero-downtime recycle of the main host: a new host process loads the main host's whole set (worker and shared
 * plugins, container plugins adopted, isolated plugins' proxies), then receives every new connection; the old one
 * answers what its clients still send with `Connection: close`, drains, unloads and exits. Shared plugins' old
 * generations (ESM cannot be unloaded) go with it. If the new host cannot load the set, it is stopped and the old one
 * keeps serving. One recycle at a time; loads, unloads and settings changes wait for it (Recycler.run).
 */
import type { Socket } from "node:net";
import type { ContainerPluginSpec } from "../container/container-plugins.js";
import type { HostedSpec, ReconcileOutcome } from "../host/protocol.js";
import type { HostLoads } from "./host-loads.js";
import type { HostPool } from "./host-pool.js";
import type { HostProcess } from "./host-process.js";
import type { HostRestore } from "./host-restore.js";
import { type Emit, type HostsState, inProcess, MAIN, placedOn } from "./hosts-state.js";
import type { WaitingConnections } from "./waiting-connections.js";

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

export interface RecyclerParts {
  state: HostsState;
  pool: Pick<HostPool, "get" | "host" | "newHost" | "switchMain">;
  loads: Pick<HostLoads, "remoteOf">;
  restore: Pick<HostRestore, "restoring" | "hostReplaced">;
  waiting: Pick<WaitingConnections, "serving" | "flush">;
  /** Hands a client connection to the current main host (PluginHosts.adopt). */
  adopt(socket: Socket): void;
  emit: Emit;
}

export class Recycler {
  /** A recycle in progress (loads, unloads and settings wait for it: the new host must get the final set). */
  private recycling: Promise<RecycleResult> | undefined;
  /** Old main hosts draining after a recycle (their pids stay untrusted on the admin socket). */
  private readonly retiring = new Set<HostProcess>();
  /** Loads, unloads and settings changes in progress: a recycle starts once they are done (it copies their result). */
  private readonly ops = new Set<Promise<unknown>>();

  constructor(
    private readonly p: RecyclerParts,
    private readonly o: { drainMs: number; idleGraceMs: number },
  ) {}

  /** True while a recycle runs. */
  get busy(): boolean {
    return this.recycling !== undefined;
  }

  /** The old main hosts still draining. */
  draining(): HostProcess[] {
    return [...this.retiring];
  }

  /** Replaces the main host (see the top of this file); rejects when the new host could not load the set. */
  recycle(reason: string): Promise<RecycleResult> {
    this.recycling ??= this.recycleNow(reason).finally(() => {
      this.recycling = undefined;
    });
    return this.recycling;
  }

  /** Runs a load / unload / settings change once a recycle in progress is done; a recycle waits for it in turn. */
  async run<T>(op: () => Promise<T>): Promise<T> {
    await this.afterRecycle();
    return this.track(op());
  }

  /** Waits for a recycle in progress (its outcome is its caller's business). */
  private async afterRecycle(): Promise<void> {
    await this.recycling?.catch(() => {});
  }

  private track<T>(op: Promise<T>): Promise<T> {
    this.ops.add(op);
    void op.then(
      () => this.ops.delete(op),
      () => this.ops.delete(op),
    );
    return op;
  }

  private async recycleNow(reason: string): Promise<RecycleResult> {
    const { state, pool, waiting } = this.p;
    const t0 = Date.now();
    if (state.closed) throw new Error("plugin hosts closed");
    await Promise.allSettled([...this.ops]); // new ones wait for this recycle
    await this.p.restore.restoring(MAIN);
    const old = await pool.host(MAIN);
    const fresh = pool.newHost(MAIN);
    const plugins = placedOn(state, MAIN);
    const containers = plugins.flatMap(([, p]) => (p.hosted.kind === "container" ? [p.hosted.spec] : []));
    const loads: Parameters<typeof populateHost>[2] = plugins.flatMap(([, p]) =>
      inProcess(p.hosted) ? [p.hosted] : [],
    );
    for (const [name, p] of state.placed)
      if (p.hostId !== MAIN) loads.push(this.p.loads.remoteOf(name, p.hostId, p.hosted));
    try {
      await fresh.start();
      await populateHost(fresh, containers, loads);
      if (pool.get(MAIN) !== old || !old.alive || !waiting.serving || state.closed)
        throw new Error("the main plugin host restarted meanwhile");
    } catch (err) {
      await fresh.close(5000).catch(() => {});
      throw new Error(`recycle aborted, the current host keeps serving: ${(err as Error).message}`);
    }
    // What changed while it loaded (its boot had the state of then).
    await fresh.request({ t: "set-ready", ready: state.ready }).catch(() => {});
    await fresh.request({ t: "set-inactive", plugins: state.inactive }).catch(() => {});
    // The switch: from here on every accepted connection goes to the new host.
    pool.switchMain(fresh);
    this.p.restore.hostReplaced(MAIN);
    waiting.flush(fresh);
    const switchMs = Date.now() - t0;
    this.retiring.add(old);
    // Connections handed to the old host but never taken (it exited first) go to the new one.
    old.removeAllListeners("orphans");
    old.on("orphans", (sockets: Socket[]) => {
      for (const s of sockets) this.p.adopt(s);
    });
    const drained = await retireHost(old, this.o.drainMs, this.o.idleGraceMs);
    this.retiring.delete(old);
    const result: RecycleResult = {
      reason,
      oldPid: old.pid,
      newPid: fresh.pid,
      switchMs,
      ms: Date.now() - t0,
      drained,
      plugins: plugins.length,
    };
    this.p.emit("host-recycled", result);
    return result;
  }
}
