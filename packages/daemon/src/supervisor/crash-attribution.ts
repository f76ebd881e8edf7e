/**
 * Who took a plugin host down: the supervisor's bookkeeping of host deaths, and its verdicts (see host-restore.ts
 * for what it does with them). Pure state, no processes: HostRestore feeds it what the hosts report and applies
 * what it answers.
 * - At load time (exact): a plugin whose load was running when its host died gets a strike; at `loadStrikes`
 *   strikes (or at the first one in an isolated host) it is quarantined.
 * - At serve time: the hosts report the plugins that receive requests (`active`). After `crashesBeforeIsolation`
 *   deaths of the main host within `crashWindowMs`, the suspects (the plugins active before every one of those
 *   deaths) are moved into isolated hosts, never quarantined on suspicion alone (the host may have been killed
 *   from outside); in an isolated host a death names its plugin exactly, or halves the group.
 */

export interface AttributionOptions {
  /** How often hosts report activity (ms): the horizon of "active before the death" is 4 periods, at least 2 s. */
  activityIntervalMs: number;
  crashWindowMs: number;
  crashesBeforeIsolation: number;
  loadStrikes: number;
}

export interface Verdict {
  /** The plugins that received requests shortly before the death. */
  active: string[];
  quarantine: { name: string; reason: string }[];
  /** Groups of plugins to move, each into a new isolated host. */
  isolate: string[][];
}

export class CrashAttribution {
  /** Per host: plugin -> when it last received a request. */
  private readonly activeAt = new Map<number, Map<string, number>>();
  /** Per host: its recent deaths while serving, with the plugins active before each. */
  private readonly crashes = new Map<number, { at: number; suspects: Set<string> }[]>();
  private readonly strikes = new Map<string, number>();

  constructor(private readonly o: AttributionOptions) {}

  /** A host reported these plugins as receiving requests now. */
  active(hostId: number, plugins: string[]): void {
    let m = this.activeAt.get(hostId);
    if (!m) {
      m = new Map<string, number>();
      this.activeAt.set(hostId, m);
    }
    const now = Date.now();
    for (const p of plugins) m.set(p, now);
  }

  /** A host was replaced (recycled) or died: its activity record starts over. */
  forgetHost(hostId: number): void {
    this.activeAt.delete(hostId);
  }

  /** A plugin loaded cleanly (or is gone): its load strikes are cleared. */
  cleared(name: string): void {
    this.strikes.delete(name);
  }

  /**
   * Host `hostId` died at `diedAt`. `loading`: the loads running then (exact suspects); `onHost`: the plugins placed
   * on it; `placed`: whether a plugin is still placed on any host; `movable`: whether it can be moved into an
   * isolated host (in-process code).
   */
  died(
    hostId: number,
    isMain: boolean,
    diedAt: number,
    cause: string,
    loading: string[],
    onHost: string[],
    placed: (name: string) => boolean,
    movable: (name: string) => boolean,
  ): Verdict {
    // Wide enough for a host whose main thread got no CPU for a while before it died (a loaded machine, GC).
    const horizon = diedAt - Math.max(2000, 4 * this.o.activityIntervalMs);
    const active = [...(this.activeAt.get(hostId) ?? [])].filter(([, t]) => t >= horizon).map(([n]) => n);
    this.activeAt.delete(hostId);
    const verdict: Verdict = { active, quarantine: [], isolate: [] };
    if (loading.length) {
      for (const name of loading) {
        const n = (this.strikes.get(name) ?? 0) + 1;
        this.strikes.set(name, n);
        if (n >= this.o.loadStrikes || !isMain)
          verdict.quarantine.push({ name, reason: `${cause} while loading it, ${n} time${n > 1 ? "s" : ""}` });
      }
      return verdict;
    }
    if (!isMain) {
      // An isolated host: its plugins are the only suspects.
      if (onHost.length === 1)
        verdict.quarantine.push({ name: onHost[0], reason: `${cause} while serving it, in isolation` });
      else if (onHost.length > 1) verdict.isolate.push(onHost.slice(Math.ceil(onHost.length / 2)));
      return verdict;
    }
    const now = Date.now();
    const list = (this.crashes.get(hostId) ?? []).filter((c) => now - c.at < this.o.crashWindowMs);
    list.push({ at: now, suspects: new Set(active.filter(placed)) });
    this.crashes.set(hostId, list);
    if (list.length < this.o.crashesBeforeIsolation) return verdict;
    this.crashes.set(hostId, []);
    const recent = list.slice(-this.o.crashesBeforeIsolation);
    let suspects = [...recent[0].suspects].filter((n) => recent.every((c) => c.suspects.has(n)));
    if (!suspects.length) suspects = [...new Set(recent.flatMap((c) => [...c.suspects]))];
    suspects = suspects.filter(movable);
    if (!suspects.length) suspects = onHost.filter(movable);
    // Each suspect moves into an isolated host (at most 4 hosts; a group is split again at its next death).
    const groups = Math.min(4, suspects.length);
    for (let g = 0; g < groups; g++) verdict.isolate.push(suspects.filter((_, i) => i % groups === g));
    return verdict;
  }
}
