/**
 * The PluginHost of `isolation: "shared"` plugins: each runs on this plugin-host process's main thread (one
 * SharedPlugin per generation) and its routes are direct function calls. Same contract as the worker host: load
 * (or swap with zero downtime: the new generation is mounted in one router swap, the old one drained and
 * terminated), unload, has, names, health, close.
 *
 * Crash containment is the host process: a shared plugin that throws outside a handler, exits or exhausts the heap
 * takes this whole process down; the supervisor restarts it and attributes the death as for any host death
 * (supervisor/plugin-hosts.ts: exact at load time, by isolation at serve time), then quarantines the culprit.
 *
 * ESM cannot be unloaded: every unloaded or replaced generation stays in this process's memory. The host counts
 * them (and the heap they took at load) and reports it (`leak`) after each one; the supervisor recycles the host
 * with zero downtime when it passes the operator's threshold.
 */
import type { PluginHealth } from "@hecate/sdk";
import { DEFAULT_WS_MAX_PAYLOAD } from "@hecate/sdk/contract";
import type { MetricJson } from "@hecate/sdk/metrics";
import { DEFAULT_MAX_REPLY_BYTES } from "@hecate/sdk/protocol";
import { wsServersByLimit } from "@hecate/sdk/runtime/ws-servers";
import { RouteError, type Router } from "../../http/router.js";
import { KeyedSerial } from "../../util/keyed-serial.js";
import { ensureEsmScope } from "../../worker/esm-scope.js";
import { PluginLoadError, type PluginSpec } from "../../worker/plugin-worker.js";
import { ensureSdkLink } from "../../worker/sdk-link.js";
import { mountFor } from "../../worker/worker-plugins.js";
import {
  type HostWorkerOptions,
  loadedInfo,
  type PluginHost,
  type PluginHostEvent,
  type SettingsOutcome,
} from "../plugin-host.js";
import type { LoadedInfo } from "../protocol.js";
import { ensureScopeHooks } from "./scoped-import.js";
import { SharedPlugin } from "./shared-plugin.js";

/** What unloaded generations left in this process: how many, and the heap they took at load (an estimate). */
export interface SharedLeak {
  generations: number;
  bytes: number;
}

export class SharedPluginHost implements PluginHost<PluginSpec> {
  readonly kind = "shared" as const;
  private readonly plugins = new Map<string, SharedPlugin>();
  private readonly locks = new KeyedSerial();
  private readonly wsServers = wsServersByLimit();
  private generation = 0;
  private readonly leaked: SharedLeak = { generations: 0, bytes: 0 };
  private readonly unloadDeadlineMs: number;
  private readonly options: ConstructorParameters<typeof SharedPlugin>[2];

  constructor(
    private readonly router: Router,
    private readonly home: string,
    tuning: HostWorkerOptions,
    private readonly emit: (e: PluginHostEvent) => void,
    /** Called after every generation that was unloaded or replaced, with the running total. */
    private readonly onLeak: (leak: SharedLeak) => void,
  ) {
    this.unloadDeadlineMs = tuning.unloadDeadlineMs ?? 5000;
    const wsMaxPayload = tuning.wsMaxPayload ?? DEFAULT_WS_MAX_PAYLOAD;
    this.options = {
      handlerTimeoutMs: tuning.handlerTimeoutMs ?? 30_000,
      maxHandlerTimeoutMs: tuning.maxHandlerTimeoutMs ?? 0,
      maxReplyBytes: tuning.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES,
      loadTimeoutMs: tuning.loadTimeoutMs ?? 15_000,
      wssFor: (maxPayload) => this.wsServers.forLimit(maxPayload ?? wsMaxPayload),
      log: (entry) => this.emit({ t: "log", ...entry }),
    };
  }

  /** Loads the plugin, or swaps a new generation in (zero downtime) when it is loaded already. */
  load(spec: PluginSpec): Promise<LoadedInfo> {
    return this.locks.run(spec.name, async () => {
      ensureSdkLink(this.home);
      ensureEsmScope(spec.root);
      ensureScopeHooks();
      const fresh = new SharedPlugin(spec, `${spec.name}.${++this.generation}`, this.options);
      try {
        await fresh.start();
      } catch (err) {
        this.retire(fresh); // what it imported stays in memory all the same
        throw err;
      }
      try {
        this.router.setPlugin(spec.name, mountFor(fresh));
      } catch (err) {
        await fresh.stop(0);
        this.retire(fresh);
        throw new PluginLoadError(spec.name, "routes", err instanceof RouteError ? err.message : String(err));
      }
      const old = this.plugins.get(spec.name);
      this.plugins.set(spec.name, fresh);
      if (old) {
        await old.stop(this.unloadDeadlineMs);
        this.retire(old);
      }
      return loadedInfo(spec.name, spec.version, this.kind, fresh.routes);
    });
  }

  /** Routes removed (unless `keepMount`: another host kind has just mounted it), drained, terminate() run. */
  unload(name: string, deadlineMs = this.unloadDeadlineMs, keepMount = false): Promise<boolean> {
    return this.locks.run(name, async () => {
      const p = this.plugins.get(name);
      if (!p) return false;
      this.plugins.delete(name);
      if (!keepMount) this.router.removePlugin(name);
      await p.stop(deadlineMs);
      this.retire(p);
      return true;
    });
  }

  private retire(p: SharedPlugin): void {
    this.leaked.generations++;
    this.leaked.bytes += p.heapBytes;
    this.onLeak({ ...this.leaked });
  }

  /** What unloaded generations left behind in this process so far. */
  leak(): SharedLeak {
    return { ...this.leaked };
  }

  has(name: string): boolean {
    return this.plugins.has(name);
  }

  names(): string[] {
    return [...this.plugins.keys()];
  }

  /** Plugins with requests or WebSockets in flight (the suspects should this process die now). */
  busy(): string[] {
    return [...this.plugins.values()].filter((p) => p.inFlight > 0 || p.wsCount > 0).map((p) => p.spec.name);
  }

  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    return this.plugins.get(name)?.health(timeoutMs);
  }

  applySettings(name: string, settings: Record<string, unknown>): Promise<SettingsOutcome> {
    return this.locks.run(name, async () => {
      const p = this.plugins.get(name);
      if (!p) return "not_loaded";
      const r = await p.applySettings(settings);
      if (r === "applied") p.spec.config = { ...p.spec.config, settings };
      return r;
    });
  }

  /** Each plugin's own metrics. */
  metrics(): { plugin: string; metrics: MetricJson[] }[] {
    return [...this.plugins.values()].map((p) => ({ plugin: p.spec.name, metrics: p.metrics() }));
  }

  async close(deadlineMs = this.unloadDeadlineMs): Promise<void> {
    await Promise.all(this.names().map((n) => this.unload(n, deadlineMs)));
    this.wsServers.close();
  }
}
