/**
 * The lifecycle service: the `plugin` aggregate in the daemon's own store, the process manager that carries a plugin
 * from plugin_installed_v1 to LOADED (extract -> activate -> load -> confirm), boot recovery, and the operations the
 * admin API calls (install / upgrade / activate / deactivate / remove) with "wait until it is done" helpers.
 *
 * Crash safety: every side effect runs in the process manager, whose durable checkpoint advances only after the
 * handler finished; every command it dispatches has an id derived from the triggering event, so a redelivery after a
 * kill -9 repeats the (idempotent) side effect and writes no event twice.
 */
import { EventEmitter } from "node:events";
import type { PluginManifest } from "@hecate/sdk";
import {
  CommandRejected,
  type Cqrs,
  createCqrs,
  type DispatchResult,
  type EventStore,
  type ProcessManager,
  type ProcessManagerContext,
  type RecordedEvent,
} from "@hecate/store";
import type { Logger } from "pino";
import type { LifecycleCluster, NodePluginStatus } from "../cluster/cluster-node.js";
import type { HostCrash } from "../supervisor/plugin-hosts.js";
import { KeyedSerial } from "../util/keyed-serial.js";
import { Admission, type PackageRejectionRecord } from "./admission.js";
import { Flags, hasFlag, type PluginCommand, type PluginEvent, type PluginState, statusName } from "./aggregate.js";
import { loadActivated, recoverPackageDirs, untilIdle } from "./boot.js";
import { PluginDispatcher } from "./dispatch.js";
import { LifecycleError } from "./errors.js";
import type { Loader, PackageOps } from "./loader.js";
import { OciFlow } from "./oci-flow.js";
import {
  maskedView,
  SettingsError,
  type SettingsFieldError,
  type SettingsValues,
  SettingsVault,
  type SettingsView,
  settingsErrors,
  withSchemaDefaults,
} from "./settings.js";
import { type ClusterSettingsHook, LifecycleSteps } from "./steps.js";
import { rejectionMessage } from "./user-messages.js";
import { type LifecycleEvent, type PluginView, PluginViews, STREAM_PREFIX } from "./views.js";

export { type PackageRejectedData, type PackageRejectionRecord, REJECTIONS_STREAM } from "./admission.js";
export { LifecycleError } from "./errors.js";
export { type LifecycleEvent, type PluginView, viewOf } from "./views.js";

export interface LifecycleOptions {
  home: string;
  store: EventStore;
  loader: Loader;
  pkg: PackageOps;
  logger: Logger;
  /** Test hook: SIGKILL this process right after appending an event of this type (crash-recovery tests). */
  crashAfter?: string;
  /**
   * Cluster mode (a PostgreSQL store shared by several daemons): this node's process manager has its own checkpoint
   * and reacts to every lifecycle event on its own disk (fetching packages by digest), and its outcomes go to the
   * cluster's per-node status; the shared events it dispatches have ids shared by every node, so they land once.
   */
  cluster?: LifecycleCluster;
  /** Cluster: the process manager met plugin_settings_changed_v1 (see steps.ts). */
  clusterSettings?: ClusterSettingsHook;
}

/** Daemon-level stream of plugin-host deaths (`plugin_host_crashed_v1`). */
// Not "plugin-…": that prefix is the plugin streams'.
export const HOSTS_STREAM = "host-crashes";

/**
 * Events: `event` (LifecycleEvent) for every lifecycle event appended (live feed for SSE and waiters), `rejection`
 * (PackageRejectionRecord) for every refused package.
 */
export class LifecycleService extends EventEmitter {
  readonly cqrs: Cqrs;
  private pm: ProcessManager | undefined;
  private readonly locks = new KeyedSerial();
  private closed = false;
  /** False until boot recovery finished: the admin API refuses changes meanwhile. */
  booted = false;
  /** Encrypts / decrypts secret settings (key in `$HECATE_HOME/settings.key`). */
  readonly vault: SettingsVault;
  /** Installs from OCI registries (oci-flow.ts). */
  readonly oci: OciFlow;
  private readonly admission: Admission;
  private readonly views: PluginViews;
  private readonly dispatcher: PluginDispatcher;
  private readonly steps: LifecycleSteps;

  constructor(private readonly o: LifecycleOptions) {
    super();
    this.setMaxListeners(0);
    this.cqrs = createCqrs(o.store);
    this.views = new PluginViews({ store: o.store, logger: o.logger, folded: (e) => this.emit("event", e) });
    this.dispatcher = new PluginDispatcher(this.cqrs, o.crashAfter);
    this.vault = new SettingsVault(o.home);
    this.oci = new OciFlow({
      home: o.home,
      logger: o.logger,
      validateManifest: (v) => o.pkg.validateManifest(v),
      packageDir: (name) => o.loader.paths(name).package,
      state: (name) => this.views.state(name),
      states: () => this.views.all(),
      dispatch: (name, cmd, ctx) => this.dispatch(name, cmd, ctx),
      nodeId: o.cluster?.nodeId,
      nodeStatus: (name, status, extra) => this.nodeStatus(name, status, extra),
    });
    this.steps = new LifecycleSteps({
      home: o.home,
      store: o.store,
      cqrs: this.cqrs,
      loader: o.loader,
      pkg: o.pkg,
      logger: o.logger,
      cluster: o.cluster,
      clusterSettings: o.clusterSettings,
      oci: this.oci,
      closed: () => this.closed,
      loadsAfterExtract: (name) => this.views.loadsAfterExtract(name),
      folded: (position) => this.views.caughtUp(position),
      dispatch: (name, cmd, ctx, id) => this.dispatch(name, cmd, ctx, id),
      nodeStatus: (name, status, extra) => this.nodeStatus(name, status, extra),
    });
    this.admission = new Admission({
      store: o.store,
      logger: o.logger,
      pkg: o.pkg,
      cluster: o.cluster,
      oci: this.oci,
      paths: (name) => o.loader.paths(name),
      state: (name) => this.views.state(name),
      settings: (name, s) => this.clearSettings(name, s),
      serial: (name, fn) => this.serial(name, fn),
      dispatch: (name, cmd) => this.dispatch(name, cmd),
      crashIfHooked: (type) => this.dispatcher.crashIfHooked(type),
      rejected: (record) => this.emit("rejection", record),
    });
  }

  get store(): EventStore {
    return this.o.store;
  }

  /**
   * Boot: clean half-done extractions on disk, fold every plugin's state, let the process manager finish whatever a
   * crash interrupted, then load again every ACTIVATED plugin. A plugin failing here is marked failed; boot goes on.
   */
  async start(): Promise<void> {
    await recoverPackageDirs(this.o.home, this.o.pkg, this.o.logger);
    await this.views.start();
    this.pm = this.steps.startProcessManager();
    await untilIdle(this.o.store, this.pm, this.views);
    this.oci.resume(); // pulls a kill -9 interrupted
    await loadActivated(this.views.all(), this.o.loader, (name, done) => this.steps.bootLoad(name, done));
    this.booted = true;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.oci.close();
    await this.pm?.stop();
    await this.views.stop();
  }

  // ---- reads ----

  state(name: string): PluginState | undefined {
    return this.views.state(name);
  }

  view(name: string): PluginView | undefined {
    return this.views.view(name);
  }

  list(): PluginView[] {
    return this.views.list();
  }

  /** The installed manifest, or null when the package is not (or no longer) on disk. */
  manifest(name: string): PluginManifest | null {
    try {
      return this.o.loader.manifest(name);
    } catch {
      return null;
    }
  }

  events(name: string): Promise<RecordedEvent[]> {
    return this.o.store.readStream(STREAM_PREFIX + name);
  }

  // ---- operations (admin API) ----

  /**
   * Installs the package at `archive` (a file the caller owns: it is moved into the plugin dir). Returns the position
   * of plugin_installed_v1; the process manager takes it from there.
   */
  install(archive: string, source: string): Promise<{ name: string; position: number }> {
    return this.admission.withArchive(archive, source, "install");
  }

  /**
   * Upgrades to the package at `archive`. Refused (`settings_incompatible`, details: the field errors) when the
   * plugin's settings do not fit the new version's schema, unless `resetSettings` (then they are cleared first).
   */
  upgrade(
    name: string,
    archive: string,
    source: string,
    options: { resetSettings?: boolean } = {},
  ): Promise<{ name: string; position: number }> {
    return this.admission.withArchive(archive, source, "upgrade", name, options.resetSettings === true);
  }

  /**
   * Installs (or upgrades to) the container plugin whose image `reference` names (`oci://…`): resolved to a digest
   * and its manifest label first (a refusal is recorded like a refused package), then recorded; the process manager
   * pulls it (see oci-flow.ts).
   */
  installOci(
    reference: string,
    op: "install" | "upgrade",
    expected?: string,
    options: { resetSettings?: boolean } = {},
  ): Promise<{ name: string; position: number }> {
    return this.admission.installOci(reference, op, expected, options);
  }

  /** Records a package refused before anything was recorded (see Admission.refuse); returns the error to throw. */
  refuse(err: unknown, r: Parameters<Admission["refuse"]>[1]): Promise<unknown> {
    return this.admission.refuse(err, r);
  }

  /** The most recent refusals, newest first. */
  rejections(limit = 50): Promise<PackageRejectionRecord[]> {
    return this.admission.rejections(limit);
  }

  /** `hecate plugin cancel NAME`: ends the image pull in flight (not_pulling when none). */
  async cancelPull(name: string): Promise<void> {
    await this.serial(name, async () => {
      try {
        await this.oci.cancel(name);
      } catch (err) {
        if (!(err instanceof CommandRejected)) throw err;
        const st = this.views.state(name);
        if (err.code === "not_pulling")
          throw new LifecycleError(
            err.code,
            `plugin ${name} is not pulling an image (it is ${statusName(st!.status)})`,
          );
        const message = rejectionMessage(name, err.code, st && statusName(st.status));
        throw message ? new LifecycleError(err.code, message) : err;
      }
    });
  }

  // ---- settings ----

  /** The plugin's settings as stored, decrypted (no defaults). A secret that cannot be decrypted is left out. */
  private clearSettings(name: string, s: PluginState): SettingsValues {
    return this.vault.open(name, s.settings, (field, err) =>
      this.o.logger.error({ plugin: name, field, err: err.message }, "a secret setting cannot be decrypted"),
    );
  }

  /** What the plugin receives (init config, onSettingsChanged): decrypted, the schema's defaults filled in. */
  pluginSettings(name: string, manifest: PluginManifest): SettingsValues {
    const s = this.views.state(name);
    return withSchemaDefaults(manifest.settings, s ? this.clearSettings(name, s) : {});
  }

  /** The admin view: schema, non-secret values, secrets as `{set}` only. */
  settingsView(name: string): SettingsView {
    const s = this.views.state(name);
    if (!s || !hasFlag(s, Flags.INSTALLED) || hasFlag(s, Flags.REMOVED))
      throw new LifecycleError("plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
    return maskedView(name, this.manifest(name)?.settings, s.settings);
  }

  /**
   * Sets `values` (merged over the current settings; `unset` removes fields) after validating the result against the
   * installed manifest's schema (SettingsError with the field errors: nothing stored), records
   * plugin_settings_changed_v1 (secrets encrypted) and gives them to the running plugin (callback or swap).
   */
  updateSettings(
    name: string,
    change: { values: SettingsValues; unset: string[] },
  ): Promise<{ view: SettingsView; applied: "live" | "swap" | "none" | "failed"; applyError?: string }> {
    return this.serial(name, async () => {
      const s = this.views.state(name);
      if (!s || !hasFlag(s, Flags.INSTALLED) || hasFlag(s, Flags.REMOVED))
        throw new LifecycleError("plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
      const manifest = this.manifest(name);
      if (!manifest)
        throw new LifecycleError("plugin_not_extracted", `plugin ${name}: its package is not extracted yet`);
      const merged: SettingsValues = { ...this.clearSettings(name, s), ...change.values };
      for (const k of change.unset) delete merged[k];
      const errors: SettingsFieldError[] = settingsErrors(manifest.settings, merged);
      if (errors.length > 0)
        throw new SettingsError(
          "invalid_settings",
          `invalid settings: ${errors.map((e) => `${e.field || "(all)"}: ${e.message}`).join("; ")}`,
          errors,
        );
      const r = await this.dispatch(name, {
        type: "change_plugin_settings_v1",
        data: {
          values: this.vault.seal(name, manifest.settings, merged),
          changed: Object.keys(change.values),
          unset: change.unset,
          reset: false,
        },
        // Cluster: the node that took the change applies it below; the others' process managers apply it there.
        ...(this.o.cluster ? { metadata: { node: this.o.cluster.nodeId } } : {}),
      });
      await this.views.caughtUp(r.position);
      const now = this.views.state(name)!;
      let applied: "live" | "swap" | "none" | "failed" = "none";
      let applyError: string | undefined;
      if (hasFlag(now, Flags.LOADED)) {
        try {
          applied = await this.o.loader.applySettings(name);
        } catch (err) {
          applied = "failed";
          applyError = (err as Error).message;
          this.o.logger.warn({ plugin: name, err: applyError }, "new settings could not be applied (swap failed)");
        }
      }
      this.o.logger.info(
        { plugin: name, applied, changed: Object.keys(change.values), unset: change.unset },
        "settings changed",
      );
      return {
        view: maskedView(name, manifest.settings, now.settings),
        applied,
        ...(applyError ? { applyError } : {}),
      };
    });
  }

  /** True when a successful extraction of this plugin's package is followed by a load (activated, or never was). */
  loadsAfterExtract(name: string): boolean {
    return this.views.loadsAfterExtract(name);
  }

  async activate(name: string): Promise<number> {
    return (await this.userCommand(name, { type: "activate_plugin_v1", data: {} })).position;
  }

  async deactivate(name: string): Promise<number> {
    return (await this.userCommand(name, { type: "deactivate_plugin_v1", data: {} })).position;
  }

  async remove(name: string, purge: boolean): Promise<number> {
    // Cluster: the node that took a purge deletes the plugin's shared store, once (its process manager, `handle`).
    const metadata = purge && this.o.cluster ? { purgedBy: this.o.cluster.nodeId } : undefined;
    const cmd: PluginCommand = { type: "remove_plugin_v1", data: { purge }, ...(metadata ? { metadata } : {}) };
    return (await this.userCommand(name, cmd)).position;
  }

  /**
   * A command the user asked for: a refusal becomes a LifecycleError with the same code whose message says, in the
   * user's words, what state the plugin is in and what to do (not `deactivate_plugin_v1 on plugin-x rejected`).
   */
  private async userCommand(name: string, cmd: PluginCommand): Promise<DispatchResult<PluginEvent>> {
    try {
      return await this.dispatch(name, cmd);
    } catch (err) {
      if (!(err instanceof CommandRejected)) throw err;
      const s = this.views.state(name);
      const message = rejectionMessage(name, err.code, s && statusName(s.status));
      throw message ? new LifecycleError(err.code, message, err.details) : err;
    }
  }

  /**
   * Resolves with the first event of `types` on the plugin's stream after `afterPosition` (checks what is stored,
   * then waits for the live feed), or rejects with LifecycleError("timeout").
   */
  waitFor(
    name: string,
    afterPosition: number,
    types: PluginEvent["type"][],
    timeoutMs = 60_000,
  ): Promise<RecordedEvent> {
    const find = async () =>
      (await this.o.store.readStream(STREAM_PREFIX + name, { direction: "backward", limit: 100 }))
        .filter((e) => e.position > afterPosition && types.includes(e.type as PluginEvent["type"]))
        .at(-1);
    // Resolved only once the in-memory views have folded the event too, so the caller's view() is current. Cluster:
    // the outcome may be another node's; this node's own steps up to it are awaited too (bounded by the timeout), so
    // the node that handled a command serves its result when it answers.
    const started = Date.now();
    const folded = async (e: RecordedEvent): Promise<RecordedEvent> => {
      if (this.o.cluster && this.pm)
        await withTimeout(this.pm.caughtUp(e.position), timeoutMs - (Date.now() - started));
      await this.views.caughtUp(e.position);
      // Cluster: another node's load failure may come first; this node's own step is done by now, and when it (or
      // any node) loaded the plugin since, that confirm is the answer (see loadAndConfirm).
      if (this.o.cluster && e.type === "plugin_load_failed_v1" && types.includes("plugin_load_confirmed_v1")) {
        const confirmed = (await this.o.store.readStream(STREAM_PREFIX + name, { direction: "backward", limit: 100 }))
          .filter((x) => x.position > e.position && x.type === "plugin_load_confirmed_v1")
          .at(-1);
        if (confirmed) await this.views.caughtUp(confirmed.position);
        return confirmed ?? e;
      }
      return e;
    };
    return new Promise((resolve, reject) => {
      let finished = false;
      const check = () =>
        find().then(
          (found) => {
            if (!found || finished) return;
            done();
            resolve(folded(found));
          },
          (err) => {
            done();
            reject(err);
          },
        );
      const onEvent = (e: LifecycleEvent) => {
        if (e.plugin !== name || e.position <= afterPosition) return;
        void check();
      };
      const timer = setTimeout(() => {
        done();
        reject(new LifecycleError("timeout", `plugin ${name}: no ${types.join("/")} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        finished = true;
        clearTimeout(timer);
        this.off("event", onEvent);
      };
      // Listen first, then look at what is stored: an event landing meanwhile is seen by one or the other.
      this.on("event", onEvent);
      void check();
    });
  }

  /** Resolves once the process manager has handled everything up to `position` (side effects done). */
  async settled(position: number, timeoutMs = 60_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LifecycleError("timeout", `lifecycle step at position ${position} not done within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([
        (async () => {
          await this.pm?.caughtUp(position);
          await this.views.caughtUp(await this.o.store.headPosition());
        })(),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- runtime reports (crash / disable) ----

  reportCrash(name: string, reason: string): void {
    void this.dispatch(name, { type: "report_plugin_crash_v1", data: { reason } }).catch((err) =>
      this.o.logger.warn({ plugin: name, err }, "cannot record crash"),
    );
  }

  reportDisabled(name: string, reason: string): void {
    void this.dispatch(name, { type: "disable_plugin_v1", data: { reason } }).catch((err) =>
      this.o.logger.warn({ plugin: name, err }, "cannot record disable"),
    );
  }

  /** The supervisor quarantined a plugin that takes its plugin host down (see supervisor/plugin-hosts.ts). */
  reportQuarantine(name: string, reason: string): void {
    this.o.logger.error({ plugin: name, reason }, "plugin quarantined");
    void this.dispatch(name, { type: "quarantine_plugin_v1", data: { reason } }).catch((err) =>
      this.o.logger.warn({ plugin: name, err }, "cannot record quarantine"),
    );
  }

  /** The health watcher (container-watch.ts): confirm_container_up_v1 / confirm_container_down_v1. */
  reportContainerHealth(name: string, up: boolean, reason: string): void {
    const cmd: PluginCommand = up
      ? { type: "confirm_container_up_v1", data: {} }
      : { type: "confirm_container_down_v1", data: { reason } };
    void this.dispatch(name, cmd).catch((err) => {
      if (!(err instanceof CommandRejected))
        this.o.logger.warn({ plugin: name, err }, "cannot record container health");
    });
  }

  /** A plugin-host process died: `plugin_host_crashed_v1` in the daemon-level `host-crashes` stream. */
  recordHostCrash(crash: HostCrash): void {
    this.o.logger.error(crash, "plugin host died");
    this.o.store
      .append(HOSTS_STREAM, [{ type: "plugin_host_crashed_v1", data: { ...crash, at: new Date().toISOString() } }])
      .catch((err) => this.o.logger.error({ err }, "cannot record a plugin host death"));
  }

  /** The latest host deaths, newest first. */
  async hostCrashes(limit = 50): Promise<(HostCrash & { at: string })[]> {
    return (await this.o.store.readStream(HOSTS_STREAM, { direction: "backward", limit })).map(
      (e) => e.data as HostCrash & { at: string },
    );
  }

  // ---- internals ----

  /** Every append goes through here (see dispatch.ts). */
  private dispatch(
    name: string,
    cmd: PluginCommand,
    ctx?: ProcessManagerContext,
    id?: string,
  ): Promise<DispatchResult<PluginEvent>> {
    return this.dispatcher.dispatch(name, cmd, ctx, id);
  }

  /** Cluster: records this node's own outcome for a plugin (best effort: a lost status row never stalls a step). */
  private async nodeStatus(
    name: string,
    status: NodePluginStatus,
    extra?: { version?: string | null; error?: string | null },
  ): Promise<void> {
    await this.o.cluster
      ?.recordStatus(name, status, extra)
      .catch((err) => this.o.logger.warn({ plugin: name, status, err }, "cannot record this node's plugin status"));
  }

  /** One admin operation per plugin at a time. */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(name, fn);
  }
}

/** `p`, or nothing once `ms` passed (the caller goes on either way). */
async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}
