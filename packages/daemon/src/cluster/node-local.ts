/**
 * What happens to a plugin on ONE node of a cluster stays that node's business (../lifecycle/README.md, "Cluster
 * mode"): a crash its plugin host restarted, a plugin it disabled after crashes or a failed reload, a quarantine are
 * this node's status in `hecate_cluster_plugin_status`, never events of the shared aggregate (which only operator
 * commands and shared steps change), so one sick node does not mark a plugin FAILED for the cluster nor take it down
 * elsewhere. `restart` loads the plugin again on this node only (`POST /admin/api/plugins/{name}/restart`), and
 * `settingsChanged` applies a settings change another node took to this node's running plugin.
 */
import type { RecordedEvent } from "@hecate/store";
import type { Logger } from "pino";
import type { AdminApi } from "../admin/api.js";
import { ApiError, sendJson } from "../admin/http.js";
import type { MountedRoute } from "../http/router.js";
import { Flags, hasFlag } from "../lifecycle/aggregate.js";
import { type Loader, LoadFailure } from "../lifecycle/loader.js";
import type { LifecycleService } from "../lifecycle/service.js";
import { rejectionMessage } from "../lifecycle/user-messages.js";
import type { ClusterNode, NodePluginStatus } from "./cluster-node.js";

/** Metadata key of a settings change: the node that took it (and applied it to its own plugin already). */
const SETTINGS_NODE = "node";

export class NodeLocal {
  constructor(
    private readonly o: { cluster: ClusterNode; lifecycle: LifecycleService; loader: Loader; logger: Logger },
  ) {}

  /** The plugin host restarted the plugin after a crash: it still runs here; the error is noted. */
  crashed(name: string, reason: string): void {
    this.fault(name, "loaded", `crashed (restarted): ${reason}`);
  }

  /** Disabled here (crashed too often, reload failed): this node's status is failed; other nodes keep serving. */
  disabled(name: string, reason: string): void {
    this.fault(name, "failed", `disabled: ${reason}`);
  }

  /** The supervisor took the plugin's host down here: failed on this node only. */
  quarantined(name: string, reason: string): void {
    this.o.logger.error({ plugin: name, reason }, "plugin quarantined on this node");
    this.fault(name, "failed", `quarantined: ${reason}`);
  }

  /**
   * Loads the plugin again on this node (after a local failure, or to pick up a fresh process): allowed when it is
   * activated for the cluster. Returns this node's new status; a load failure is this node's status and a 422.
   */
  async restart(name: string): Promise<{ node: string; status: NodePluginStatus; version: string }> {
    const s = this.o.lifecycle.state(name);
    if (!s || !hasFlag(s, Flags.INSTALLED) || hasFlag(s, Flags.REMOVED))
      throw new ApiError(404, "plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
    if (!hasFlag(s, Flags.ACTIVATED) || hasFlag(s, Flags.EXTRACTING))
      throw new ApiError(
        409,
        "plugin_not_activated",
        `plugin ${name} is not active in the cluster (it is ${this.o.lifecycle.view(name)?.status}); activate it with: hecate plugin activate ${name}`,
      );
    let version: string;
    try {
      version = (await this.o.loader.load(name)).version;
    } catch (err) {
      const stage = err instanceof LoadFailure ? err.stage : "load";
      const message = (err as Error).message;
      await this.record(name, "failed", { version: s.installed_version, error: message });
      throw new ApiError(422, "load_failed", `plugin ${name} failed to load on this node: ${message}`, { stage });
    }
    // Deactivated or removed through another node while it loaded: the process manager's unload may have run first.
    const now = this.o.lifecycle.state(name);
    if (!now || !hasFlag(now, Flags.ACTIVATED) || hasFlag(now, Flags.REMOVED)) {
      await this.o.loader.unload(name);
      throw new ApiError(409, "plugin_not_activated", `plugin ${name} was deactivated meanwhile`);
    }
    await this.record(name, "loaded", { version });
    this.o.logger.info({ plugin: name, version }, "plugin restarted on this node");
    return { node: this.o.cluster.nodeId, status: "loaded", version };
  }

  /**
   * The process manager met plugin_settings_changed_v1: unless this node took the change (it applied it then), the
   * running plugin here gets the new settings (its onSettingsChanged, or a swap) once this node's view has them.
   */
  async settingsChanged(name: string, e: RecordedEvent, folded: (position: number) => Promise<void>): Promise<void> {
    // A reset is part of an upgrade (the new version starts with them); the taker applied its own change already.
    if ((e.data as { reset?: unknown }).reset === true) return;
    if (e.metadata[SETTINGS_NODE] === this.o.cluster.nodeId || !this.o.loader.isLoaded(name)) return;
    await folded(e.position); // the loader reads the settings from the in-memory view
    try {
      const applied = await this.o.loader.applySettings(name);
      this.o.logger.info({ plugin: name, applied, by: e.metadata[SETTINGS_NODE] }, "settings changed on another node");
    } catch (err) {
      const message = (err as Error).message;
      this.o.logger.warn({ plugin: name, err: message }, "new settings could not be applied (swap failed)");
      this.fault(name, "loaded", `settings not applied: ${message}`);
    }
  }

  private fault(name: string, status: NodePluginStatus, error: string): void {
    this.o.cluster
      .recordFault(name, status, error)
      .catch((err) => this.o.logger.warn({ plugin: name, status, err }, "cannot record this node's plugin status"));
  }

  private async record(
    name: string,
    status: NodePluginStatus,
    extra: { version?: string | null; error?: string | null },
  ): Promise<void> {
    await this.o.cluster
      .recordStatus(name, status, extra)
      .catch((err) => this.o.logger.warn({ plugin: name, status, err }, "cannot record this node's plugin status"));
  }
}

/**
 * `POST /admin/api/plugins/{name}/restart`: reloads the plugin on the node that answers (cluster mode; without a
 * cluster: 409 `not_cluster`, the plugin's state is the daemon's and `activate` retries a failed one).
 */
export function nodeLocalRoutes(admin: AdminApi, local: NodeLocal | undefined): MountedRoute[] {
  return [
    {
      method: "POST",
      path: "/admin/api/plugins/:name/restart",
      handler: admin.guarded(async (_req, res, p) => {
        if (!local)
          throw new ApiError(
            409,
            "not_cluster",
            `restart loads a plugin again on one node of a cluster; this daemon runs alone: a failed plugin is retried with: hecate plugin activate ${p.name}`,
          );
        sendJson(res, 200, await local.restart(p.name));
      }, true),
    },
  ];
}
