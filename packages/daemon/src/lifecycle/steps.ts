/**
 * The process manager's steps (the original's on_plugin_installed / on_plugin_package_extracted / on_plugin_activated):
 * installed/upgraded -> extract -> extract_plugin_package_v1 | fail_plugin_extract_v1; extracted -> activate (first
 * install) or load/swap (already activated); activated -> load -> confirm | fail; deactivated -> unload; removed ->
 * unload, release images, delete files (purge: the shared store too, on the node that took it). Also the boot load
 * of an ACTIVATED plugin (the load step without a triggering event).
 *
 * Crash safety: the process manager's checkpoint advances only after `handle` finished, and every command dispatched
 * here has an id derived from the triggering event, so a redelivery after a kill -9 repeats the (idempotent) side
 * effect and writes no event twice.
 */
import { mkdirSync } from "node:fs";
import {
  CommandRejected,
  type Cqrs,
  type EventStore,
  type ProcessManager,
  type ProcessManagerContext,
  type RecordedEvent,
  startProcessManager,
} from "@hecate/store";
import type { Logger } from "pino";
import type { LifecycleCluster, NodePluginStatus } from "../cluster/cluster-node.js";
import { releaseRemovedPlugin } from "../container/image-refs.js";
import { fileDigest } from "../util/file-digest.js";
import {
  Flags,
  hasFlag,
  type PluginCommand,
  type PluginEvent,
  type PluginState,
  pluginAggregate,
} from "./aggregate.js";
import { executionStep } from "./container-watch.js";
import type { PluginDispatch } from "./dispatch.js";
import { type Loader, LoadFailure, type LoadResult, type PackageOps } from "./loader.js";
import type { OciFlow } from "./oci-flow.js";
import { STREAM_PREFIX } from "./views.js";

/**
 * Cluster: the process manager met plugin_settings_changed_v1 (cluster/node-local.ts applies another node's change
 * to this node's running plugin; `folded` waits until this node's view has the event).
 */
export type ClusterSettingsHook = (
  name: string,
  e: RecordedEvent,
  folded: (position: number) => Promise<void>,
) => Promise<void>;

/** What the steps need from the lifecycle service. */
export interface StepDeps {
  home: string;
  store: EventStore;
  cqrs: Cqrs;
  loader: Loader;
  pkg: PackageOps;
  logger: Logger;
  cluster: LifecycleCluster | undefined;
  oci: Pick<OciFlow, "handle">;
  clusterSettings?: ClusterSettingsHook;
  /** True once the service is closing: a step then leaves its event for the next start. */
  closed(): boolean;
  /** True when a successful extraction of this plugin's package is followed by a load. */
  loadsAfterExtract(name: string): boolean;
  /** Resolves once the in-memory views have folded everything up to `position`. */
  folded(position: number): Promise<void>;
  dispatch: PluginDispatch;
  /** Cluster: records this node's own outcome (best effort). */
  nodeStatus(
    name: string,
    status: NodePluginStatus,
    extra?: { version?: string | null; error?: string | null },
  ): Promise<void>;
}

export class LifecycleSteps {
  constructor(private readonly d: StepDeps) {}

  /**
   * Starts the durable process manager that runs `handle` (checkpoint `pm:plugin-lifecycle`, per node in cluster
   * mode; command ids in the shared scope `plugin-lifecycle`). A refused command is skipped, any other failure retried.
   */
  startProcessManager(): ProcessManager {
    const cluster = this.d.cluster;
    return startProcessManager(this.d.store, {
      name: cluster ? `plugin-lifecycle@${cluster.nodeId}` : "plugin-lifecycle",
      idScope: "plugin-lifecycle",
      streamPrefix: STREAM_PREFIX,
      handle: (e, ctx) => this.handle(e, ctx),
      onError: (err, e, attempt) => {
        if (err instanceof CommandRejected) return "skip";
        this.d.logger.error({ err, event: e.type, stream: e.stream, attempt }, "lifecycle step failed; retrying");
      },
    });
  }

  /** One event of a `plugin-` stream, delivered by the process manager. */
  async handle(e: RecordedEvent, ctx: ProcessManagerContext): Promise<void> {
    if (this.d.closed()) throw new Error("lifecycle closed"); // leave the event for the next start
    const name = e.stream.slice(STREAM_PREFIX.length);
    // Cluster: every node decides on the state as of this event (as the node that handled it first did), so all
    // dispatch the same commands with the same ids, and a node behind the others still does its own local steps.
    const ev = e as unknown as PluginEvent;
    if (this.d.cluster && (await this.superseded(name, ev))) return;
    const s = this.d.cluster
      ? await this.stateAt(name, e.revision)
      : (await this.d.cqrs.load(pluginAggregate, name)).state;
    if (await this.d.oci.handle(e, name, s, ctx)) return;
    await executionStep(e, name, s, ctx, (n, c, x) => this.d.dispatch(n, c, x));
    switch (ev.type) {
      case "plugin_installed_v1":
      case "plugin_upgraded_v1": {
        if (ev.data.generation !== s.generation || !hasFlag(s, Flags.EXTRACTING)) return; // superseded meanwhile
        await this.extract(name, ev.data.generation, ctx, e.metadata.packageSha256);
        return;
      }
      case "plugin_package_extracted_v1": {
        if (ev.data.generation !== s.generation) return;
        if (hasFlag(s, Flags.ACTIVATED)) await this.loadAndConfirm(name, s, ctx, undefined, undefined, e.id);
        else if (this.d.loadsAfterExtract(name))
          await this.d.dispatch(name, { type: "activate_plugin_v1", data: {} }, ctx);
        return;
      }
      case "plugin_activated_v1":
        if (ev.data.activation !== s.activation || !hasFlag(s, Flags.ACTIVATED) || hasFlag(s, Flags.EXTRACTING)) return;
        await this.loadAndConfirm(name, s, ctx, undefined, undefined, e.id);
        return;
      case "plugin_deactivated_v1":
        await this.d.loader.unload(name);
        await this.d.nodeStatus(name, "unloaded");
        if (!hasFlag(s, Flags.ACTIVATED))
          await this.d.dispatch(name, { type: "confirm_plugin_unloaded_v1", data: {} }, ctx).catch(ignoreRejection);
        return;
      case "plugin_removed_v1":
        await this.d.loader.unload(name);
        if (hasFlag(s, Flags.REMOVED)) {
          await this.releaseImages(name);
          try {
            this.d.loader.removeFiles(name, ev.data.purge);
          } catch (err) {
            // Leftover files must not stall every later lifecycle step behind this one: log and move on.
            this.d.logger.error({ plugin: name, err }, "removing the plugin's files failed");
          }
          if (ev.data.purge && e.metadata.purgedBy === this.d.cluster?.nodeId) await this.purgeSharedStore(name);
        }
        await this.d.nodeStatus(name, "removed");
        return;
      case "plugin_settings_changed_v1":
        await this.d.clusterSettings?.(name, e, (p) => this.d.folded(p));
        return;
      default:
        return;
    }
  }

  /** Boot reload of an ACTIVATED plugin; the command id is tied to the stream revision, so a crash loop adds nothing. */
  async bootLoad(name: string, done?: LoadResult | LoadFailure): Promise<void> {
    const loaded = await this.d.cqrs.load(pluginAggregate, name);
    const id = `boot-load:${name}:${loaded.revision}`;
    try {
      await this.loadAndConfirm(name, loaded.state, undefined, id, done);
    } catch (err) {
      this.d.logger.error({ plugin: name, err }, "boot load could not be recorded");
    }
  }

  /**
   * Cluster: deletes a purged plugin's store rows from PostgreSQL, on the node that took the purge only (its process
   * manager runs this step once, also after a crash right after the append). Skipped when the plugin was installed
   * again since (that install's data is not this purge's). A failure (PostgreSQL away) throws: the step is retried.
   */
  private async purgeSharedStore(name: string): Promise<void> {
    if (!hasFlag((await this.d.cqrs.load(pluginAggregate, name)).state, Flags.REMOVED)) {
      this.d.logger.warn({ plugin: name }, "plugin installed again before its purge ran: its shared store is kept");
      return;
    }
    const stores = await this.d.loader.purgeClusterStore(name);
    this.d.logger.info({ plugin: name, stores }, "plugin store purged from the cluster database");
  }

  /** A removed plugin's container images go, unless another plugin uses them (container/image-refs.ts). */
  private async releaseImages(name: string): Promise<void> {
    try {
      const r = await releaseRemovedPlugin(this.d.home, name);
      for (const k of r.kept) this.d.logger.info({ plugin: name, image: k.image.ref, why: k.why }, "image kept");
      for (const i of r.removed) this.d.logger.info({ plugin: name, image: i.ref }, "image removed");
    } catch (err) {
      this.d.logger.error({ plugin: name, err }, "releasing the plugin's images failed");
    }
  }

  private async extract(name: string, generation: number, ctx: ProcessManagerContext, sha256?: unknown): Promise<void> {
    const paths = this.d.loader.paths(name);
    let outcome: PluginCommand;
    try {
      if (this.d.cluster && typeof sha256 === "string") {
        // Every node extracts from the bytes the event names (the archive on disk may be another version's). A fetch
        // that fails for want of PostgreSQL throws out of here (the process manager retries the step); a package
        // that is missing or corrupt there is this node's extraction failure (its `code`).
        await this.d.nodeStatus(name, "extracting");
        mkdirSync(paths.root, { recursive: true });
        if ((await fileDigest(paths.archive))?.sha256 !== sha256)
          await this.d.cluster.fetchPackage(sha256, paths.archive).catch((err: Error & { code?: unknown }) => {
            throw typeof err.code === "string" && PACKAGE_FETCH_CODES.has(err.code) ? err : new RetryStep(err);
          });
      }
      const r = await this.d.pkg.extractPackage(paths.archive, paths.package, { expectedName: name });
      outcome = {
        type: "extract_plugin_package_v1",
        data: { generation, version: r.manifest.version, files: r.files, bytes: r.bytes },
      };
    } catch (err) {
      if (err instanceof RetryStep) throw err.cause;
      const e = err as Error & { code?: unknown; details?: unknown };
      const code = typeof e.code === "string" ? e.code : "extract_error";
      this.d.logger.warn({ plugin: name, code, err: e.message }, "package extraction failed");
      outcome = {
        type: "fail_plugin_extract_v1",
        data: { generation, code, message: e.message, ...(e.details !== undefined ? { details: e.details } : {}) },
      };
    }
    if (outcome.type === "extract_plugin_package_v1")
      await this.d.nodeStatus(name, "extracted", { version: outcome.data.version });
    else await this.d.nodeStatus(name, "extract_failed", { error: `${outcome.data.code}: ${outcome.data.message}` });
    await this.d.dispatch(name, outcome, ctx);
  }

  private async loadAndConfirm(
    name: string,
    s: PluginState,
    ctx: ProcessManagerContext | undefined,
    id?: string,
    done?: LoadResult | LoadFailure,
    trigger?: string,
  ): Promise<void> {
    let outcome: PluginCommand;
    try {
      if (done instanceof LoadFailure) throw done;
      const r = done ?? (await this.d.loader.load(name));
      outcome = {
        type: "confirm_plugin_loaded_v1",
        data: { activation: s.activation, version: r.version, routes: r.routes, ...(ctx ? {} : { boot: true }) },
      };
    } catch (err) {
      const stage = err instanceof LoadFailure ? err.stage : "load";
      this.d.logger.warn({ plugin: name, stage, err: (err as Error).message }, "plugin load failed");
      outcome = {
        type: "fail_plugin_load_v1",
        data: { activation: s.activation, version: s.installed_version ?? "", stage, message: (err as Error).message },
      };
    }
    if (outcome.type === "confirm_plugin_loaded_v1")
      await this.d.nodeStatus(name, "loaded", { version: outcome.data.version });
    else await this.d.nodeStatus(name, "failed", { version: outcome.data.version, error: outcome.data.message });
    // Cluster: a boot load is this node's own business (its status above); the shared stream already says LOADED.
    if (this.d.cluster && !ctx) return;
    // Cluster: the shared outcome of a load step is "loaded" once any node loaded it. A node whose load failed leaves
    // a confirmed activation alone (its failure is its own status); confirm and fail have their own ids, so a confirm
    // after another node's failure still lands (clearing FAILED) and N nodes failing alike record it once.
    if (this.d.cluster && trigger) {
      if (outcome.type === "fail_plugin_load_v1") {
        const head = (await this.d.cqrs.load(pluginAggregate, name)).state;
        if (head.activation === s.activation && hasFlag(head, Flags.LOADED)) return;
      }
      id = `${outcome.type}:${trigger}`;
    }
    try {
      await this.d.dispatch(name, outcome, ctx, id);
    } catch (err) {
      // Deactivated/removed while loading: take the freshly loaded code down again.
      if (err instanceof CommandRejected && outcome.type === "confirm_plugin_loaded_v1")
        await this.d.loader.unload(name);
      throw err;
    }
  }

  /**
   * Cluster: true when the plugin's current state makes this event's local step pointless (a node catching up on
   * history): a newer package generation or activation follows, or the plugin is removed (its removal is still
   * handled). The later events carry the plugin to where it is now; the shared outcomes of this one were recorded by
   * the nodes that handled it when it was current (else the plugin could not have moved on).
   */
  private async superseded(name: string, ev: PluginEvent): Promise<boolean> {
    if (ev.type === "plugin_removed_v1" || ev.type === "plugin_deactivated_v1") return false;
    const now = (await this.d.cqrs.load(pluginAggregate, name)).state;
    if (hasFlag(now, Flags.REMOVED)) return true;
    if ("generation" in ev.data && ev.data.generation !== now.generation) return true;
    return ev.type === "plugin_activated_v1" && ev.data.activation !== now.activation;
  }

  /** The plugin's state right after the event at `revision` of its stream. */
  private async stateAt(name: string, revision: number): Promise<PluginState> {
    let state = pluginAggregate.initialState;
    for (const e of await this.d.store.readStream(STREAM_PREFIX + name, { limit: revision + 1 }))
      state = pluginAggregate.evolve(state, e);
    return state;
  }
}

/** Codes of ClusterNode.fetchPackage errors that no retry can mend. */
const PACKAGE_FETCH_CODES = new Set(["package_missing", "digest_mismatch"]);

/** Carries an error out of a step's own failure handling, so the process manager retries the step. */
class RetryStep extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
  }
}

function ignoreRejection(err: unknown): void {
  if (!(err instanceof CommandRejected)) throw err;
}
