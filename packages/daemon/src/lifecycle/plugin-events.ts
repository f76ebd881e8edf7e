/**
 * The `plugin` aggregate's events: what decide.ts records and evolve.ts folds (the shapes recorded in every
 * `plugin-{name}` stream).
 */
import type { PackageInfo, PackageRejection, SettingsChange } from "./plugin-commands.js";

export type PluginEvent =
  | { type: "plugin_installed_v1"; data: PackageInfo & { generation: number; at: string } }
  | { type: "plugin_upgraded_v1"; data: PackageInfo & { generation: number; previous_version: string; at: string } }
  | { type: "plugin_removed_v1"; data: { purge: boolean; at: string } }
  | {
      type: "plugin_package_extracted_v1";
      data: { generation: number; version: string; files: number; bytes: number; at: string };
    }
  | {
      type: "plugin_extract_failed_v1";
      data: { generation: number; code: string; message: string; details?: unknown; at: string };
    }
  | { type: "plugin_activated_v1"; data: { activation: number; at: string } }
  | { type: "plugin_deactivated_v1"; data: { at: string } }
  | {
      type: "plugin_load_confirmed_v1";
      data: { activation: number; version: string; routes: { method: string; path: string }[]; at: string };
    }
  | {
      type: "plugin_load_failed_v1";
      data: { activation: number; version: string; stage: string; message: string; at: string };
    }
  | { type: "plugin_unload_confirmed_v1"; data: { at: string } }
  | { type: "plugin_crashed_v1"; data: { reason: string; at: string } }
  | { type: "plugin_disabled_v1"; data: { reason: string; at: string } }
  | { type: "plugin_quarantined_v1"; data: { reason: string; at: string } }
  | { type: "plugin_package_rejected_v1"; data: PackageRejection & { at: string } }
  | { type: "plugin_settings_changed_v1"; data: SettingsChange & { at: string } }
  | {
      type: "oci_pull_started_v1";
      data: {
        generation: number;
        reference: string;
        image: string;
        digest: string;
        layers: number;
        bytes: number;
        at: string;
      };
    }
  | {
      type: "oci_pull_progressed_v1";
      data: { generation: number; layers_done: number; bytes_done: number; at: string };
    }
  | { type: "oci_pull_completed_v1"; data: { generation: number; digest: string; image_id: string; at: string } }
  | { type: "oci_pull_failed_v1"; data: { generation: number; code: string; message: string; at: string } }
  | { type: "oci_pull_cancelled_v1"; data: { generation: number; reason: string; first_install: boolean; at: string } }
  | { type: "plugin_execution_started_v1"; data: { at: string } }
  | { type: "plugin_execution_stopped_v1"; data: { reason: string; at: string } }
  | { type: "container_confirmed_up_v1"; data: { at: string } }
  | { type: "container_confirmed_down_v1"; data: { reason: string; at: string } };
