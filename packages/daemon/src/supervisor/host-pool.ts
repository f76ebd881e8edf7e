/**
 * The plugin-host processes: the current one of each host id, started (or restarted) on demand with backoff and
 * never given up, with its socket (isolated hosts) and pid file in `run/hosts`. The pool reports a current host's
 * events and death; what a death means is decided in host-restore.ts.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HostWorkerOptions } from "../host/plugin-host.js";
import type { ContainerPolicy, HostEvent } from "../host/protocol.js";
import type { ConnectionLimits } from "../http/conn-limits.js";
import { type HostExit, HostProcess } from "./host-process.js";
import { type Emit, type HostsState, logSupervisor, MAIN } from "./hosts-state.js";
import type { WaitingConnections } from "./waiting-connections.js";

/** What every host boots with (see PluginHostsOptions). */
export interface HostPoolOptions {
  home: string;
  containers: boolean;
  runtime?: HostWorkerOptions;
  activityIntervalMs: number;
  allowedHosts: string[];
  limits?: ConnectionLimits;
  containerPolicy?: ContainerPolicy;
  metrics?: boolean;
}

export interface HostPoolHooks {
  /** An event of host `hostId` (of a draining old main host: only its logs and its plugins' own crashes). */
  event(hostId: number, e: HostEvent): void;
  /** The current process of a host exited (`expected`: after its close()). */
  exit(proc: HostProcess, exit: HostExit, expected: boolean): void;
  emit: Emit;
}

export class HostPool {
  private readonly hosts = new Map<number, HostProcess>();
  private readonly starting = new Map<number, Promise<HostProcess>>();
  private consecutiveFailures = 0;
  /** Given to every main host when the admin shares the plugin port (proxied by the main host). */
  adminSocketPath: string | undefined;

  constructor(
    private readonly o: HostPoolOptions,
    private readonly state: HostsState,
    private readonly waiting: WaitingConnections,
    private readonly hooks: HostPoolHooks,
  ) {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  private get dir(): string {
    return join(this.o.home, "run", "hosts");
  }

  /** The socket an isolated host listens on (the main host proxies its plugins to it). */
  socketOf(hostId: number): string {
    return join(this.dir, `host-${hostId}.sock`);
  }

  private pidFileOf(hostId: number): string {
    return join(this.dir, `host-${hostId}.pid`);
  }

  /** The current process of host `hostId`, whether alive or not (undefined when there is none). */
  get(hostId: number): HostProcess | undefined {
    return this.hosts.get(hostId);
  }

  /** True while host `hostId` is being started. */
  isStarting(hostId: number): boolean {
    return this.starting.has(hostId);
  }

  /** Every current host process. */
  all(): HostProcess[] {
    return [...this.hosts.values()];
  }

  pids(): Record<number, number | undefined> {
    return Object.fromEntries([...this.hosts].map(([id, h]) => [id, h.pid]));
  }

  /** The running host `hostId`, started (or restarted) when needed. */
  host(hostId: number): Promise<HostProcess> {
    const h = this.hosts.get(hostId);
    if (h?.alive && !this.starting.has(hostId)) return Promise.resolve(h);
    const pending = this.starting.get(hostId);
    if (pending) return pending;
    const started = this.spawn(hostId).finally(() => this.starting.delete(hostId));
    this.starting.set(hostId, started);
    return started;
  }

  private async spawn(hostId: number): Promise<HostProcess> {
    for (;;) {
      if (this.state.closed) throw new Error("plugin hosts closed");
      const proc = this.newHost(hostId);
      if (hostId === MAIN) this.waiting.keepOrphansOf(proc);
      this.hosts.set(hostId, proc);
      try {
        await proc.start();
        this.watch(proc);
        this.consecutiveFailures = 0;
        if (hostId === MAIN && this.waiting.serving) this.waiting.flush(proc);
        return proc;
      } catch (err) {
        // Never give up (the daemon must not crash-loop with its host), but back off.
        this.consecutiveFailures++;
        logSupervisor(this.hooks.emit, "error", `plugin host ${hostId} failed to start: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, Math.min(5000, 100 * 2 ** this.consecutiveFailures)));
      }
    }
  }

  /** A process for host `hostId`, not started and not current yet (a recycle starts the next main host so). */
  newHost(hostId: number): HostProcess {
    const proc = new HostProcess({
      home: this.o.home,
      hostId,
      listenPath: hostId === MAIN ? undefined : this.socketOf(hostId),
      containers: hostId === MAIN && this.o.containers,
      runtime: this.o.runtime,
      activityIntervalMs: this.o.activityIntervalMs,
      ready: this.state.ready,
      inactive: hostId === MAIN ? this.state.inactive : undefined,
      adminSocketPath: hostId === MAIN ? this.adminSocketPath : undefined,
      allowedHosts: this.o.allowedHosts,
      limits: this.o.limits,
      containerPolicy: this.o.containerPolicy,
      metrics: this.o.metrics,
    });
    proc.on("event", (e: HostEvent) => {
      if (this.hosts.get(hostId) === proc) this.hooks.event(hostId, e);
      else if (e.t === "log" || e.t === "crashed" || e.t === "disabled") this.hooks.event(hostId, e); // a draining host
    });
    return proc;
  }

  /** Makes the started `fresh` the current main host (a recycle's switch; the caller hands it the connections). */
  switchMain(fresh: HostProcess): void {
    this.hosts.set(MAIN, fresh);
    this.watch(fresh);
    this.waiting.keepOrphansOf(fresh);
  }

  /** A started current host: its death is reported while it is current; its pid file written. */
  private watch(proc: HostProcess): void {
    proc.once("exit", (exit: HostExit, expected: boolean) => {
      if (this.hosts.get(proc.id) === proc) this.hooks.exit(proc, exit, expected);
    });
    writeFileSync(this.pidFileOf(proc.id), `${proc.pid}\n`);
  }

  /** Stops isolated host `hostId` once no plugin is placed on it. */
  async retireIfEmpty(hostId: number): Promise<void> {
    if (hostId === MAIN || [...this.state.placed.values()].some((p) => p.hostId === hostId)) return;
    const h = this.hosts.get(hostId);
    this.hosts.delete(hostId);
    await h?.close().catch(() => {});
    rmSync(this.socketOf(hostId), { force: true });
    rmSync(this.pidFileOf(hostId), { force: true });
  }

  /** Closes every host (and `others`, e.g. draining ones) and removes `run/hosts`. */
  async close(others: Iterable<HostProcess>): Promise<void> {
    await Promise.all([...this.hosts.values(), ...others].map((h) => h.close()));
    this.hosts.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
