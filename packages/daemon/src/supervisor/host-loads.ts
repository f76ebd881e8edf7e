/**
 * A plugin's load into a given host, and the record of the loads running in each host: a host that dies during one
 * names its plugin exactly (see crash-attribution.ts). A plugin in an isolated host is also mounted in the main host
 * as a `remote` plugin (a proxy to its host's socket).
 */
import type { HostWorkerOptions } from "../host/plugin-host.js";
import type { HostedSpec, LoadedInfo } from "../host/protocol.js";
import type { HostPool } from "./host-pool.js";
import { type Hosted, type HostsState, MAIN, staticDirOf } from "./hosts-state.js";

export class HostLoads {
  private readonly loading = new Map<number, Set<string>>();
  /** Loads that restore a host's plugins after its death (known good: blamed only when nothing else loads). */
  private readonly restoreLoading = new Map<number, Set<string>>();

  constructor(
    private readonly state: HostsState,
    private readonly pool: Pick<HostPool, "host" | "socketOf">,
    /** The hosts' worker tuning (DaemonOptions.runtime): its load timeout applies when a plugin names none. */
    private readonly tuning: HostWorkerOptions | undefined,
  ) {}

  /** Loads a plugin into host `hostId` (started when needed) and places it there; `restore`: after the host died. */
  async loadOn(hostId: number, name: string, hosted: Hosted, restore = false): Promise<LoadedInfo> {
    const host = await this.pool.host(hostId);
    const sets = restore ? this.restoreLoading : this.loading;
    const set = sets.get(hostId) ?? new Set<string>();
    sets.set(hostId, set);
    set.add(name);
    // A shared plugin's load runs on the host's main thread: one stuck in a loop stalls the whole host, and only
    // the host's death (a load-time death: attributed exactly, see HostRestore.died) gets it back.
    const stuck =
      hosted.kind === "shared"
        ? setTimeout(
            () => host.kill("SIGKILL"),
            (hosted.spec.loadTimeoutMs ?? this.tuning?.loadTimeoutMs ?? 15_000) + 5000,
          )
        : undefined;
    try {
      const info = await host.request<LoadedInfo>({ t: "load", hosted });
      this.state.placed.set(name, { hosted, hostId });
      if (hostId !== MAIN) await this.mountRemote(name, hostId, hosted);
      return info;
    } finally {
      clearTimeout(stuck);
      set.delete(name);
    }
  }

  /** The main host proxies an isolated plugin's routes to its host. */
  async mountRemote(name: string, hostId: number, hosted: Hosted): Promise<void> {
    const main = await this.pool.host(MAIN);
    await main.request({ t: "load", hosted: this.remoteOf(name, hostId, hosted) });
  }

  /** The main host's proxy of a plugin that runs in isolated host `hostId`. */
  remoteOf(name: string, hostId: number, hosted: Hosted): Extract<HostedSpec, { kind: "remote" }> {
    return { kind: "remote", name, socketPath: this.pool.socketOf(hostId), staticDir: staticDirOf(hosted) };
  }

  /** The loads that were running in host `hostId` when it died (its restore's only if nothing else), forgotten. */
  takeRunning(hostId: number): string[] {
    let loading = [...(this.loading.get(hostId) ?? [])];
    if (!loading.length) loading = [...(this.restoreLoading.get(hostId) ?? [])];
    this.loading.delete(hostId);
    this.restoreLoading.delete(hostId);
    return loading;
  }
}
