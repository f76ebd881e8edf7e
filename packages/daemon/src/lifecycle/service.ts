/**
 * The lifecycle service: the façade the daemon, the admin API and the cluster code use over the `plugin` aggregate in
 * the daemon's own store. It wires the parts, each in its own file:
 *
 * - views.ts: the read side (every plugin's state folded from the live feed, `PluginView`, the `event` feed);
 * - steps.ts: the process manager's steps that carry a plugin from plugin_installed_v1 to LOADED (extract ->
 *   activate -> load -> confirm) and take it down again (deactivate / remove), and the boot load;
 * - boot.ts: package-dir recovery, "let the process manager finish", the boot loads (put in order by `start`);
 * - dispatch.ts: the one write path (every command on a plugin's aggregate, the crash-recovery test hook);
 * - admission.ts / oci-flow.ts: install / upgrade before anything is recorded, `oci://` pulls;
 * - commands.ts: activate / deactivate / remove / cancel a pull, refusals in the user's words;
 * - settings-ops.ts: settings views and changes; waits.ts: "wait until it is done" for the admin API's answers;
 * - fault-reports.ts: crashes, disables, quarantines, container health, plugin-host deaths.
 *
 * Crash safety: every side effect runs in the process manager, whose durable checkpoint advances only after the
 * handler finished; every command it dispatches has an id derived from the triggering event, so a redelivery after a
 * kill -9 repeats the (idempotent) side effect and writes no event twice.
 */
import { EventEmitter } from "node:events";
import type { PluginManifest } from "@hecate/sdk";
import { type Cqrs, createCqrs, type EventStore, type ProcessManager, type RecordedEvent } from "@hecate/store";
import type { Logger } from "pino";
import type { LifecycleCluster, NodePluginStatus } from "../cluster/cluster-node.js";
import type { HostCrash } from "../supervisor/plugin-hosts.js";
import { KeyedSerial } from "../util/keyed-serial.js";
import { Admission, type PackageRejectionRecord } from "./admission.js";
import type { PluginCommand, PluginEvent, PluginState } from "./aggregate.js";
import { loadActivated, recoverPackageDirs, untilIdle } from "./boot.js";
import { UserCommands } from "./commands.js";
import { PluginDispatcher } from "./dispatch.js";
import { FaultReports } from "./fault-reports.js";
import type { Loader, PackageOps } from "./loader.js";
import { OciFlow } from "./oci-flow.js";
import { type SettingsValues, SettingsVault, type SettingsView } from "./settings.js";
import { SettingsOps } from "./settings-ops.js";
import { type ClusterSettingsHook, LifecycleSteps } from "./steps.js";
import { type PluginView, PluginViews, STREAM_PREFIX } from "./views.js";
import { LifecycleWaits } from "./waits.js";

export { type PackageRejectedData, type PackageRejectionRecord, REJECTIONS_STREAM } from "./admission.js";
export { LifecycleError } from "./errors.js";
export { HOSTS_STREAM } from "./fault-reports.js";
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

/**
 * Events: `event` (LifecycleEvent) for every lifecycle event appended (live feed for SSE and waiters), `rejection`
 * (PackageRejectionRecord) for every refused package.
 */
export class LifecycleService extends EventEmitter {
  readonly cqrs: Cqrs;
  private pm: ProcessManager | undefined;
  private closed = false;
  /** False until boot recovery finished: the admin API refuses changes meanwhile. */
  booted = false;
  /** Encrypts / decrypts secret settings (key in `$HECATE_HOME/settings.key`). */
  readonly vault: SettingsVault;
  /** Installs from OCI registries (oci-flow.ts). */
  readonly oci: OciFlow;
  private readonly views: PluginViews;
  private readonly steps: LifecycleSteps;
  private readonly admission: Admission;
  private readonly commands: UserCommands;
  private readonly settings: SettingsOps;
  private readonly waits: LifecycleWaits;
  private readonly reports: FaultReports;

  constructor(private readonly o: LifecycleOptions) {
    super();
    this.setMaxListeners(0);
    const { home, store, loader, pkg, logger, cluster } = o;
    const nodeId = cluster?.nodeId;
    const cqrs = createCqrs(store);
    this.cqrs = cqrs;
    this.vault = new SettingsVault(home);
    const dispatcher = new PluginDispatcher(cqrs, o.crashAfter);
    const dispatch = dispatcher.dispatch;
    const userDispatch = (name: string, cmd: PluginCommand) => dispatch(name, cmd);
    const nodeStatus = this.nodeStatus.bind(this);
    const locks = new KeyedSerial(); // one admin operation per plugin at a time
    const serial = <T>(name: string, fn: () => Promise<T>) => locks.run(name, fn);
    const views = new PluginViews({ store, logger, folded: (e) => this.emit("event", e) });
    const state = (name: string) => views.state(name);
    const folded = (position: number) => views.caughtUp(position);
    this.views = views;
    const oci = new OciFlow({
      home,
      logger,
      validateManifest: (v) => pkg.validateManifest(v),
      packageDir: (name) => loader.paths(name).package,
      state,
      states: () => views.all(),
      dispatch: (name, cmd, ctx) => dispatch(name, cmd, ctx),
      nodeId,
      nodeStatus,
    });
    this.oci = oci;
    this.steps = new LifecycleSteps({
      home,
      store,
      cqrs,
      loader,
      pkg,
      logger,
      cluster,
      clusterSettings: o.clusterSettings,
      oci,
      closed: () => this.closed,
      loadsAfterExtract: (name) => views.loadsAfterExtract(name),
      folded,
      dispatch,
      nodeStatus,
    });
    const manifest = (name: string) => this.manifest(name);
    const settings = new SettingsOps({
      vault: this.vault,
      logger,
      loader,
      nodeId,
      state,
      manifest,
      serial,
      folded,
      dispatch: userDispatch,
    });
    this.settings = settings;
    this.admission = new Admission({
      store,
      logger,
      pkg,
      cluster,
      oci,
      paths: (name) => loader.paths(name),
      state,
      settings: (name, s) => settings.clear(name, s),
      serial,
      dispatch: userDispatch,
      crashIfHooked: (type) => dispatcher.crashIfHooked(type),
      rejected: (record) => this.emit("rejection", record),
    });
    this.commands = new UserCommands({ nodeId, oci, state, serial, dispatch: userDispatch });
    this.waits = new LifecycleWaits({ store, cluster: !!cluster, pm: () => this.pm, folded, events: this });
    this.reports = new FaultReports({ store, logger, dispatch: userDispatch });
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
  cancelPull(name: string): Promise<void> {
    return this.commands.cancelPull(name);
  }

  // ---- settings (settings-ops.ts) ----

  /** What the plugin receives (init config, onSettingsChanged): decrypted, the schema's defaults filled in. */
  pluginSettings(name: string, manifest: PluginManifest): SettingsValues {
    return this.settings.forPlugin(name, manifest);
  }

  /** The admin view: schema, non-secret values, secrets as `{set}` only. */
  settingsView(name: string): SettingsView {
    return this.settings.view(name);
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
    return this.settings.update(name, change);
  }

  // ---- operator commands (commands.ts) ----

  /** True when a successful extraction of this plugin's package is followed by a load (activated, or never was). */
  loadsAfterExtract(name: string): boolean {
    return this.views.loadsAfterExtract(name);
  }

  activate(name: string): Promise<number> {
    return this.commands.activate(name);
  }

  deactivate(name: string): Promise<number> {
    return this.commands.deactivate(name);
  }

  remove(name: string, purge: boolean): Promise<number> {
    return this.commands.remove(name, purge);
  }

  // ---- waits (waits.ts) ----

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
    return this.waits.waitFor(name, afterPosition, types, timeoutMs);
  }

  /** Resolves once the process manager has handled everything up to `position` (side effects done). */
  settled(position: number, timeoutMs = 60_000): Promise<void> {
    return this.waits.settled(position, timeoutMs);
  }

  // ---- fault reports (fault-reports.ts) ----

  reportCrash(name: string, reason: string): void {
    this.reports.crash(name, reason);
  }

  reportDisabled(name: string, reason: string): void {
    this.reports.disabled(name, reason);
  }

  /** The supervisor quarantined a plugin that takes its plugin host down (see supervisor/plugin-hosts.ts). */
  reportQuarantine(name: string, reason: string): void {
    this.reports.quarantine(name, reason);
  }

  /** The health watcher (container-watch.ts): confirm_container_up_v1 / confirm_container_down_v1. */
  reportContainerHealth(name: string, up: boolean, reason: string): void {
    this.reports.containerHealth(name, up, reason);
  }

  /** A plugin-host process died: `plugin_host_crashed_v1` in the daemon-level `host-crashes` stream. */
  recordHostCrash(crash: HostCrash): void {
    this.reports.hostCrash(crash);
  }

  /** The latest host deaths, newest first. */
  hostCrashes(limit = 50): Promise<(HostCrash & { at: string })[]> {
    return this.reports.hostCrashes(limit);
  }

  // ---- internals ----

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
}
