/**
 * A plugin's settings as the lifecycle serves and changes them: decrypted for the plugin (with the schema's
 * defaults), masked for the admin view, and `updateSettings` (validate against the installed manifest's schema,
 * record plugin_settings_changed_v1 with secrets sealed, give them to the running plugin). The vault, the schema
 * checks and the masking are settings.ts.
 */
import type { PluginManifest } from "@hecate/sdk";
import type { DispatchResult } from "@hecate/store";
import type { Logger } from "pino";
import { Flags, hasFlag, type PluginCommand, type PluginEvent, type PluginState } from "./aggregate.js";
import { LifecycleError } from "./errors.js";
import type { Loader, SettingsApplied } from "./loader.js";
import {
  maskedView,
  SettingsError,
  type SettingsFieldError,
  type SettingsValues,
  type SettingsVault,
  type SettingsView,
  settingsErrors,
  withSchemaDefaults,
} from "./settings.js";
import { rejectionMessage } from "./user-messages.js";

/** What the settings operations need from the lifecycle service. */
export interface SettingsOpsDeps {
  vault: SettingsVault;
  logger: Logger;
  loader: Pick<Loader, "applySettings">;
  /** Cluster mode: this node's id (the node that took a change applies it itself). */
  nodeId: string | undefined;
  state(name: string): PluginState | undefined;
  /** The installed manifest, or null when the package is not on disk. */
  manifest(name: string): PluginManifest | null;
  /** Runs `fn` after every other operation on this plugin (one at a time per plugin). */
  serial<T>(name: string, fn: () => Promise<T>): Promise<T>;
  dispatch(name: string, cmd: PluginCommand): Promise<DispatchResult<PluginEvent>>;
  /** Resolves once the in-memory views have folded everything up to `position`. */
  folded(position: number): Promise<void>;
}

export class SettingsOps {
  constructor(private readonly d: SettingsOpsDeps) {}

  /** The plugin's settings as stored, decrypted (no defaults). A secret that cannot be decrypted is left out. */
  clear(name: string, s: PluginState): SettingsValues {
    return this.d.vault.open(name, s.settings, (field, err) =>
      this.d.logger.error({ plugin: name, field, err: err.message }, "a secret setting cannot be decrypted"),
    );
  }

  /** What the plugin receives (init config, onSettingsChanged): decrypted, the schema's defaults filled in. */
  forPlugin(name: string, manifest: PluginManifest): SettingsValues {
    const s = this.d.state(name);
    return withSchemaDefaults(manifest.settings, s ? this.clear(name, s) : {});
  }

  /** The admin view: schema, non-secret values, secrets as `{set}` only. */
  view(name: string): SettingsView {
    const s = this.installed(name);
    return maskedView(name, this.d.manifest(name)?.settings, s.settings);
  }

  /** See LifecycleService.updateSettings. */
  update(
    name: string,
    change: { values: SettingsValues; unset: string[] },
  ): Promise<{ view: SettingsView; applied: SettingsApplied | "failed"; applyError?: string }> {
    return this.d.serial(name, async () => {
      const s = this.installed(name);
      const manifest = this.d.manifest(name);
      if (!manifest)
        throw new LifecycleError("plugin_not_extracted", `plugin ${name}: its package is not extracted yet`);
      const merged: SettingsValues = { ...this.clear(name, s), ...change.values };
      for (const k of change.unset) delete merged[k];
      const errors: SettingsFieldError[] = settingsErrors(manifest.settings, merged);
      if (errors.length > 0)
        throw new SettingsError(
          "invalid_settings",
          `invalid settings: ${errors.map((e) => `${e.field || "(all)"}: ${e.message}`).join("; ")}`,
          errors,
        );
      const r = await this.d.dispatch(name, {
        type: "change_plugin_settings_v1",
        data: {
          values: this.d.vault.seal(name, manifest.settings, merged),
          changed: Object.keys(change.values),
          unset: change.unset,
          reset: false,
        },
        // Cluster: the node that took the change applies it below; the others' process managers apply it there.
        ...(this.d.nodeId !== undefined ? { metadata: { node: this.d.nodeId } } : {}),
      });
      await this.d.folded(r.position);
      const now = this.d.state(name)!;
      let applied: SettingsApplied | "failed" = "none";
      let applyError: string | undefined;
      if (hasFlag(now, Flags.LOADED)) {
        try {
          applied = await this.d.loader.applySettings(name);
        } catch (err) {
          applied = "failed";
          applyError = (err as Error).message;
          this.d.logger.warn({ plugin: name, err: applyError }, "new settings could not be applied (swap failed)");
        }
      }
      this.d.logger.info(
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

  /** The plugin's state when it is installed (not removed), else LifecycleError plugin_not_found. */
  private installed(name: string): PluginState {
    const s = this.d.state(name);
    if (!s || !hasFlag(s, Flags.INSTALLED) || hasFlag(s, Flags.REMOVED))
      throw new LifecycleError("plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
    return s;
  }
}
