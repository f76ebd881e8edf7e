/**
 * Crash detection and restarts of the loaded containers: Podman's event stream (`die`) and a periodic health probe
 * (`healthFailures` misses in a row). A crashed container is restarted within a budget (default 3 in 5 min) with a
 * fresh socket dir; past the budget the plugin is taken down and reported `failed`. OOM kills are reason "oom".
 */
import type { KeyedSerial } from "../util/keyed-serial.js";
import type { Emit, Entry } from "./container-entry.js";
import type { ContainerRunner } from "./container-runner.js";
import { type ContainerPluginsOptions, LABEL_INSTANCE } from "./container-types.js";
import { mountSocketDir } from "./host-mounts.js";
import { type PodmanClient, PodmanError, type PodmanEvent, sleep } from "./podman.js";

export interface CrashWatchParts {
  podman: PodmanClient;
  instanceId: string;
  /** The loaded plugins' entries (ContainerPlugins' own map: read only here). */
  loaded: ReadonlyMap<string, Entry>;
  /** The per-plugin queue of load/swap/unload/restart. */
  locks: Pick<KeyedSerial, "run">;
  runner: Pick<ContainerRunner, "waitHealthy">;
  /** Unloads a plugin that is past its restart budget (routes removed, container retired). */
  takeDown(e: Entry): Promise<void>;
  /** Follows a restarted container's output from `sinceMs`. */
  followLogs(e: Entry, sinceMs: number): void;
  emit: Emit;
}

export type CrashWatchOptions = Pick<ContainerPluginsOptions, "restartBudget" | "healthIntervalMs" | "healthFailures">;

export class CrashWatch {
  private readonly events = new AbortController();
  private healthTimer: NodeJS.Timeout | undefined;
  private watching = false;
  private probing = false;

  constructor(
    private readonly parts: CrashWatchParts,
    private readonly opts: CrashWatchOptions,
  ) {}

  /** Starts the event watch and the health probe. Idempotent. */
  start(): void {
    if (this.watching) return;
    this.watching = true;
    void this.watchEvents();
    const every = this.opts.healthIntervalMs ?? 5000;
    this.healthTimer = setInterval(() => void this.probeAll(), every);
    this.healthTimer.unref();
  }

  /** Stops watching for good. */
  stop(): void {
    this.events.abort();
    clearInterval(this.healthTimer);
  }

  private async watchEvents(): Promise<void> {
    const { podman, instanceId } = this.parts;
    const signal = this.events.signal;
    while (!signal.aborted) {
      try {
        await podman.events(`${LABEL_INSTANCE}=${instanceId}`, (ev) => this.onPodmanEvent(ev), signal);
      } catch {
        if (signal.aborted) return;
      }
      await sleep(500); // stream ended or failed: reconnect
    }
  }

  private onPodmanEvent(ev: PodmanEvent): void {
    const action = ev.Action ?? ev.status;
    if (action !== "die" && action !== "died") return;
    const id = ev.Actor?.ID ?? ev.id;
    for (const e of this.parts.loaded.values())
      if (e.containerId === id && !e.expectingExit && !e.restarting) void this.onCrash(e, undefined);
  }

  private async probeAll(): Promise<void> {
    if (this.probing) return; // a slow round never overlaps the next
    this.probing = true;
    try {
      await this.probeRound();
    } finally {
      this.probing = false;
    }
  }

  private async probeRound(): Promise<void> {
    const timeout = Math.min(2000, Math.max(200, this.opts.healthIntervalMs ?? 5000));
    for (const e of [...this.parts.loaded.values()]) {
      if (e.expectingExit || e.restarting || e.failed) continue;
      if (await e.link?.probe(e.healthPath, timeout)) {
        e.healthFails = 0;
        continue;
      }
      e.healthFails++;
      if (e.healthFails >= (this.opts.healthFailures ?? 3)) void this.onCrash(e, "unhealthy");
    }
  }

  /** A container died or stopped answering: restart within the budget, else take it down and report failure. */
  private async onCrash(e: Entry, why: "unhealthy" | undefined): Promise<void> {
    if (e.restarting || e.expectingExit || e.failed) return;
    const { podman, loaded, locks, runner, emit } = this.parts;
    e.restarting = true;
    try {
      const info = await podman.inspectContainer(e.containerId);
      const oom = !!info && (info.State.OOMKilled || (!info.State.Running && info.State.ExitCode === 137));
      const reason: "oom" | "exit" | "unhealthy" = oom ? "oom" : (why ?? "exit");
      if (!why && info?.State.Running) return; // stale event (already restarted)
      const budget = this.opts.restartBudget ?? { max: 3, windowMs: 5 * 60_000 };
      const now = Date.now();
      e.restarts = e.restarts.filter((t) => now - t < budget.windowMs);
      emit({
        type: "crashed",
        plugin: e.spec.name,
        reason,
        exitCode: info && !info.State.Running ? info.State.ExitCode : undefined,
        restarts: e.restarts.length,
      });
      if (loaded.get(e.spec.name) !== e) return; // unloaded or swapped meanwhile
      if (e.restarts.length >= budget.max) {
        e.failed = true;
        await locks.run(e.spec.name, async () => {
          if (loaded.get(e.spec.name) !== e) return;
          await this.parts.takeDown(e);
        });
        emit({
          type: "failed",
          plugin: e.spec.name,
          reason,
          message: `crashed ${budget.max + 1} times within ${Math.round(budget.windowMs / 1000)} s (last: ${reason})`,
        });
        return;
      }
      e.restarts.push(now);
      await locks.run(e.spec.name, async () => {
        if (loaded.get(e.spec.name) !== e) return;
        e.expectingExit = true;
        if (info?.State.Running) {
          await podman.killContainer(e.containerId).catch(() => {});
          await this.waitStopped(e.containerId, 5000);
        }
        e.expectingExit = false;
        const restartedAt = Date.now();
        // A fresh socket dir: nothing the crashed process left there (a stale socket, a symlink) is seen again.
        // The old link keeps its fd (and so the old tmpfs) until the new socket is verified and routed.
        await mountSocketDir(e.socketDir, e.uid);
        await podman.startContainer(e.containerId);
        await runner.waitHealthy(e);
        e.healthFails = 0;
        this.parts.followLogs(e, restartedAt);
      });
      emit({ type: "restarted", plugin: e.spec.name, restarts: e.restarts.length });
    } catch (err) {
      // The restart itself failed: count it as a crash and try again (the budget bounds this).
      e.restarting = false;
      if (loaded.get(e.spec.name) === e && !(err instanceof PodmanError && err.status === 404))
        setTimeout(() => void this.onCrash(e, "unhealthy"), 200).unref();
      return;
    } finally {
      e.restarting = false;
    }
  }

  /** Waits (at most `timeoutMs`) until container `id` no longer runs. */
  private async waitStopped(id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const info = await this.parts.podman.inspectContainer(id);
      if (!info?.State.Running) return;
      await sleep(50);
    }
  }
}
