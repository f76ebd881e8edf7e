/**
 * Main-thread side of "a plugin's child processes die with it" (the worker side is child-guard.ts): collects the
 * process groups a plugin's worker reports and, when that worker ends for any reason (unload, swap, crash, watchdog,
 * load failure), signals every group still alive: SIGTERM, then SIGKILL after a grace period.
 *
 * On a graceful stop the worker has already stopped its groups (and reaped its direct children) before it exits, so
 * this finds nothing to do; after a crash it is the only thing that stops them.
 */
import type { Worker } from "node:worker_threads";
import { isChildReport, liveGroups, signalGroup } from "./child-guard.js";

/** A worker's groups; `done` resolves once they were signalled (and escalated) after the worker exited. */
interface Tracked {
  groups: Set<number>;
  done: Promise<void>;
}

export class ChildReaper {
  private readonly tracked = new WeakMap<Worker, Tracked>();

  /** @param graceMs between SIGTERM and SIGKILL of a dead worker's groups. */
  constructor(private readonly graceMs = 2000) {}

  /** Starts listening to `worker`'s reports; call before the worker can run plugin code (right after creating it). */
  track(worker: Worker): void {
    const groups = new Set<number>();
    const done = new Promise<void>((resolve) => {
      worker.on("message", (data: unknown) => {
        // The worker posts its reports unbatched (one message each); SDK protocol messages come in arrays.
        if (!isChildReport(data)) return;
        if (data.t === "child-spawned") groups.add(data.pgid);
        else groups.delete(data.pgid);
      });
      // Messages the worker posted before it ended are delivered before `exit` (Node drains the port first).
      worker.once("exit", () => {
        // never rejects: a failure to signal (no /proc, EPERM) must not become an unhandled rejection of the daemon
        void this.reap(groups)
          .catch(() => {})
          .then(resolve);
      });
    });
    this.tracked.set(worker, { groups, done });
  }

  /** Resolves once the groups of `worker` (which has exited or is exiting) were stopped. */
  reaped(worker: Worker): Promise<void> {
    return this.tracked.get(worker)?.done ?? Promise.resolve();
  }

  private async reap(groups: Set<number>): Promise<void> {
    const signalled = [...groups].filter((g) => signalGroup(g, "SIGTERM"));
    if (signalled.length === 0) return;
    const deadline = Date.now() + this.graceMs;
    let alive = liveGroups(signalled);
    while (alive.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      alive = liveGroups(alive);
    }
    // The killed direct children of a dead worker stay zombies (nobody in this process waits for them any more).
    for (const g of alive) signalGroup(g, "SIGKILL");
  }
}
