/**
 * The `plugin` aggregate's commands (the original's names, plus failure reports of our own) with their payloads,
 * and the codes a command is refused with (`RejectionCode`). The rules that take them are in decide.ts.
 */
import type { Command } from "@hecate/store";
import type { OciSource, PluginType } from "./plugin-state.js";

export interface PackageInfo {
  name: string;
  version: string;
  plugin_type: PluginType;
  callback_module?: string | null;
  oci_image?: string | null;
  source: string;
  icon?: string | null;
  group_name?: string | null;
  group_icon?: string | null;
  /**
   * Set when the plugin comes from an OCI registry: the reference as given (`oci://…`), the image pinned by digest
   * (`host/repo@sha256:…`, also `oci_image`) and its layers: a process manager pulls it before the package is laid out.
   */
  oci?: OciSource | null;
}

/** New settings (stored form: secrets already encrypted); `changed` / `unset` name the fields, never a value. */
export interface SettingsChange {
  values: Record<string, unknown>;
  changed: string[];
  unset: string[];
  /** Cleared by an upgrade or install asked to reset settings that no longer fit the new schema. */
  reset: boolean;
}

/**
 * A package refused before any install / upgrade was recorded (the archive could not be read, the manifest names
 * another plugin, the plugin is already installed...). Nothing on disk changed; the refusal is kept in the history.
 */
export interface PackageRejection {
  op: "install" | "upgrade";
  code: string;
  message: string;
  details?: unknown;
  source: "upload" | "path" | "url" | "oci";
  /** The operator's file, when the package was given as {path}. */
  path?: string;
  /** The package URL, when the daemon was asked to download it ({url}). */
  url?: string;
  /** Size and sha256 of the refused file (null when it was not received whole, e.g. too large). */
  bytes: number | null;
  sha256: string | null;
}

export type PluginCommand =
  | Command<"install_plugin_v1", PackageInfo>
  | Command<"upgrade_plugin_v1", PackageInfo>
  | Command<"remove_plugin_v1", { purge: boolean }>
  | Command<"extract_plugin_package_v1", { generation: number; version: string; files: number; bytes: number }>
  | Command<"fail_plugin_extract_v1", { generation: number; code: string; message: string; details?: unknown }>
  | Command<"activate_plugin_v1", Record<string, never>>
  | Command<"deactivate_plugin_v1", Record<string, never>>
  | Command<
      "confirm_plugin_loaded_v1",
      { activation: number; version: string; routes: { method: string; path: string }[]; boot?: boolean }
    >
  | Command<"fail_plugin_load_v1", { activation: number; version: string; stage: string; message: string }>
  | Command<"confirm_plugin_unloaded_v1", Record<string, never>>
  | Command<"report_plugin_crash_v1", { reason: string }>
  | Command<"disable_plugin_v1", { reason: string }>
  /** The supervisor found that this plugin takes its plugin-host process down: it is deactivated until activated. */
  | Command<"quarantine_plugin_v1", { reason: string }>
  | Command<"reject_plugin_package_v1", PackageRejection>
  | Command<"change_plugin_settings_v1", SettingsChange>
  // ---- container plugins from an OCI registry, and their execution (the original's names) ----
  | Command<"start_oci_pull_v1", { generation: number }>
  | Command<"report_oci_pull_progress_v1", { generation: number; layers_done: number; bytes_done: number }>
  | Command<"complete_oci_pull_v1", { generation: number; digest: string; image_id: string }>
  | Command<"fail_oci_pull_v1", { generation: number; code: string; message: string }>
  | Command<"cancel_oci_pull_v1", { reason: string }>
  | Command<"start_plugin_execution_v1", Record<string, never>>
  | Command<"stop_plugin_execution_v1", { reason: string }>
  | Command<"confirm_container_up_v1", Record<string, never>>
  | Command<"confirm_container_down_v1", { reason: string }>;

export type PluginCommandType = PluginCommand["type"];

export type RejectionCode =
  | "invalid_plugin_name"
  | "invalid_command"
  | "plugin_already_installed"
  | "plugin_not_installed"
  | "plugin_not_extracted"
  | "plugin_already_activated"
  | "plugin_not_activated"
  | "stale_command"
  | "already_pulling"
  | "not_pulling"
  | "plugin_already_running"
  | "plugin_not_running";
