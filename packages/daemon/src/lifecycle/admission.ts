/**
 * Admission of a package: the checks an install or upgrade passes before anything is recorded (its manifest, its
 * name, the plugin's state, its settings against the new schema), the record of every refusal (the
 * `package-rejections` stream, and the plugin's own stream when it is installed), then install_plugin_v1 /
 * upgrade_plugin_v1 (in cluster mode after the bytes went to the shared package table). The process manager
 * (steps.ts) takes it from there.
 */
import { mkdirSync, renameSync, rmSync } from "node:fs";
import type { PluginManifest } from "@hecate/sdk";
import { CommandRejected, type DispatchResult, type EventStore } from "@hecate/store";
import type { Logger } from "pino";
import type { LifecycleCluster } from "../cluster/cluster-node.js";
import { fileDigest } from "../util/file-digest.js";
import {
  acceptsInstall,
  Flags,
  hasFlag,
  type PackageInfo,
  type PackageRejection,
  type PluginCommand,
  type PluginEvent,
  type PluginState,
  statusName,
} from "./aggregate.js";
import { LifecycleError } from "./errors.js";
import type { PackageOps } from "./loader.js";
import type { OciFlow } from "./oci-flow.js";
import { type SettingsValues, settingsErrors } from "./settings.js";
import { rejectionMessage } from "./user-messages.js";

/** Daemon-level stream of refused packages (not a `plugin-` stream: no aggregate, no process manager). */
export const REJECTIONS_STREAM = "package-rejections";

/** Data of `package_rejected_v1` in the `package-rejections` stream. */
export interface PackageRejectedData extends PackageRejection {
  /** The plugin it was for, when known (upgrade URL, or a readable manifest); null when the archive was unreadable. */
  plugin: string | null;
  at: string;
}

/** A refusal as the admin API lists and streams it. */
export interface PackageRejectionRecord extends PackageRejectedData {
  position: number;
}

/** What admission needs from the lifecycle service. */
export interface AdmissionDeps {
  store: EventStore;
  logger: Logger;
  pkg: PackageOps;
  cluster: LifecycleCluster | undefined;
  oci: Pick<OciFlow, "resolve">;
  paths(name: string): { root: string; archive: string };
  state(name: string): PluginState | undefined;
  /** The plugin's stored settings, decrypted. */
  settings(name: string, s: PluginState): SettingsValues;
  /** Runs `fn` after every other operation on this plugin (one at a time per plugin). */
  serial<T>(name: string, fn: () => Promise<T>): Promise<T>;
  dispatch(name: string, cmd: PluginCommand): Promise<DispatchResult<PluginEvent>>;
  crashIfHooked(type: string): Promise<void>;
  /** A refusal was recorded. */
  rejected(record: PackageRejectionRecord): void;
}

/** Where a refusal came from. */
interface RefusalSource {
  op: "install" | "upgrade";
  archive?: string;
  source: PackageRejection["source"];
  path?: string;
  url?: string;
}

export class Admission {
  constructor(private readonly d: AdmissionDeps) {}

  async withArchive(
    archive: string,
    source: string,
    op: "install" | "upgrade",
    expected?: string,
    resetSettings = false,
  ): Promise<{ name: string; position: number }> {
    let manifest: PluginManifest;
    try {
      manifest = await this.d.pkg.readArchiveManifest(archive);
    } catch (err) {
      throw await this.refuse(err, { op, archive, ...origin(source), plugin: expected ?? null });
    }
    const name = manifest.name;
    if (expected !== undefined && name !== expected) {
      const err = new LifecycleError("name_mismatch", `the package is for ${name}, not ${expected}`, { field: "name" });
      throw await this.refuse(err, { op, archive, ...origin(source), plugin: expected });
    }
    const refusal = { op, archive, ...origin(source) };
    return this.admit(manifest, source, op, refusal, resetSettings, null, () => {
      const paths = this.d.paths(name);
      mkdirSync(paths.root, { recursive: true });
      renameSync(archive, paths.archive);
    });
  }

  /**
   * Installs (or upgrades to) the container plugin whose image `reference` names (`oci://…`): resolved to a digest
   * and its manifest label first (a refusal is recorded like a refused package), then recorded; the process manager
   * pulls it (see oci-flow.ts).
   */
  async installOci(
    reference: string,
    op: "install" | "upgrade",
    expected?: string,
    options: { resetSettings?: boolean } = {},
  ): Promise<{ name: string; position: number }> {
    const refusal = { op, source: "oci" as const, path: reference };
    let resolved: Awaited<ReturnType<OciFlow["resolve"]>>;
    try {
      resolved = await this.d.oci.resolve(reference);
    } catch (err) {
      throw await this.refuse(err, { ...refusal, plugin: expected ?? null });
    }
    if (expected !== undefined && resolved.manifest.name !== expected) {
      const err = new LifecycleError("name_mismatch", `the image is for ${resolved.manifest.name}, not ${expected}`, {
        field: "name",
      });
      throw await this.refuse(err, { ...refusal, plugin: expected });
    }
    return this.admit(
      resolved.manifest,
      reference,
      op,
      refusal,
      options.resetSettings === true,
      resolved.oci,
      () => {},
    );
  }

  /** The install / upgrade rules of withArchive and installOci, then install_plugin_v1 / upgrade_plugin_v1. */
  private admit(
    manifest: PluginManifest,
    source: string,
    op: "install" | "upgrade",
    refusal: RefusalSource,
    resetSettings: boolean,
    oci: PackageInfo["oci"],
    place: () => void,
  ): Promise<{ name: string; position: number }> {
    const name = manifest.name;
    return this.d.serial(name, async () => {
      const s = this.d.state(name);
      const isInstalled = s && hasFlag(s, Flags.INSTALLED) && !hasFlag(s, Flags.REMOVED);
      // Checked before the archive is moved (a refused install must not overwrite the installed package), with the
      // aggregate's own rule: a plugin whose last attempt failed before it ran may be installed again.
      if (op === "install" && s && !acceptsInstall(s)) {
        const err = new LifecycleError(
          "plugin_already_installed",
          rejectionMessage(name, "plugin_already_installed", statusName(s.status))!,
        );
        throw await this.refuse(err, { ...refusal, plugin: name });
      }
      if (op === "upgrade" && !isInstalled) {
        const err = new LifecycleError("plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
        throw await this.refuse(err, { ...refusal, plugin: name });
      }
      if (op === "upgrade" && s && Object.keys(s.settings).length > 0) {
        const errors = settingsErrors(manifest.settings, this.d.settings(name, s));
        if (errors.length > 0 && !resetSettings) {
          const fields = errors.map((e) => e.field || "(all)").join(", ");
          const err = new LifecycleError(
            "settings_incompatible",
            `the settings of ${name} do not fit version ${manifest.version}'s settings schema (${fields}): change them first (hecate plugin config) or upgrade with --reset-settings`,
            errors,
          );
          throw await this.refuse(err, { ...refusal, plugin: name });
        }
        if (errors.length > 0)
          await this.d.dispatch(name, {
            type: "change_plugin_settings_v1",
            data: { values: {}, changed: [], unset: Object.keys(s.settings), reset: true },
          });
      }
      place();
      const info: PackageInfo = {
        name,
        version: manifest.version,
        plugin_type: manifest.plugin_type ?? "in_process",
        callback_module: manifest.callback_module ?? "dist/index.js",
        oci_image: manifest.container?.image ?? null,
        source,
        icon: manifest.icon ?? null,
        group_name: manifest.group_name ?? null,
        group_icon: manifest.group_icon ?? null,
        ...(oci ? { oci } : {}),
      };
      const type = op === "install" ? "install_plugin_v1" : "upgrade_plugin_v1";
      // Cluster: the bytes go to the shared package table first; the event names them by digest. An oci:// install
      // has no archive (its digest-pinned image is the package, each node pulls it): the event names this node,
      // which runs the recorded pull (oci-flow.ts).
      const cluster = this.d.cluster;
      if (!cluster || oci) {
        const metadata = cluster ? { metadata: { node: cluster.nodeId } } : {};
        return { name, position: (await this.d.dispatch(name, { type, data: info, ...metadata })).position };
      }
      // Under the shared package lock: a prune pass never runs between storing the bytes and appending the event.
      return cluster.withPackageLock(async () => {
        const packageSha256 = await cluster.storePackage(this.d.paths(name).archive);
        const r = await this.d.dispatch(name, { type, data: info, metadata: { packageSha256 } });
        return { name, position: r.position };
      });
    });
  }

  /**
   * Records a package refused before any install / upgrade was recorded, removes the refused file, and returns the
   * error for the caller to throw. Every refusal lands in the `package-rejections` stream (one place to see them all,
   * names known or not); when the plugin it names is installed, its own stream gets plugin_package_rejected_v1 too, so
   * its history and lastError show it. Recording is best effort: the caller's error wins over a failed append. The
   * file is removed only after the append: a kill -9 in between leaves an upload the boot sweep removes, never a
   * refusal without its event.
   */
  async refuse(err: unknown, r: RefusalSource & { plugin: string | null }): Promise<unknown> {
    try {
      const file = r.archive ? await fileDigest(r.archive) : null;
      const e = err as Error & { code?: unknown; details?: unknown };
      const rejection: PackageRejection = {
        op: r.op,
        code: typeof e?.code === "string" ? e.code : "refused",
        message: e?.message ?? String(err),
        ...(e?.details !== undefined ? { details: e.details } : {}),
        source: r.source,
        ...(r.path !== undefined ? { path: r.path } : {}),
        ...(r.url !== undefined ? { url: r.url } : {}),
        bytes: file?.bytes ?? null,
        sha256: file?.sha256 ?? null,
      };
      const recorded = await this.recordRejection(r.plugin, rejection);
      await this.d.crashIfHooked("package_rejected_v1");
      this.d.logger.warn({ plugin: r.plugin, code: rejection.code, sha256: rejection.sha256 }, "package refused");
      this.d.rejected(recorded);
      const s = r.plugin ? this.d.state(r.plugin) : undefined;
      if (r.plugin && s && hasFlag(s, Flags.INSTALLED) && !hasFlag(s, Flags.REMOVED))
        await this.d.dispatch(r.plugin, { type: "reject_plugin_package_v1", data: rejection }).catch(ignoreRejection);
    } catch (recordErr) {
      this.d.logger.error({ err: recordErr }, "cannot record a package refusal");
    } finally {
      if (r.archive) rmSync(r.archive, { force: true });
    }
    return err;
  }

  /** The most recent refusals, newest first. */
  async rejections(limit = 50): Promise<PackageRejectionRecord[]> {
    return (await this.d.store.readStream(REJECTIONS_STREAM, { direction: "backward", limit })).map((e) => ({
      position: e.position,
      ...(e.data as PackageRejectedData),
    }));
  }

  private async recordRejection(plugin: string | null, rejection: PackageRejection): Promise<PackageRejectionRecord> {
    const data: PackageRejectedData = { ...rejection, plugin, at: new Date().toISOString() };
    const r = await this.d.store.append(REJECTIONS_STREAM, [{ type: "package_rejected_v1", data }]);
    return { position: r.position, ...data };
  }
}

function ignoreRejection(err: unknown): void {
  if (!(err instanceof CommandRejected)) throw err;
}

/** The service's `source` (a path, a package URL, or "upload") as a rejection's source fields. */
function origin(source: string): { source: "upload" | "path" | "url"; path?: string; url?: string } {
  if (source === "upload") return { source };
  return /^https?:\/\//i.test(source) ? { source: "url", url: source } : { source: "path", path: source };
}
