/**
 * The `plugin` aggregate's fold: the state after each recorded event (pure; unknown event types leave it as is).
 */
import type { RecordedEvent } from "@hecate/store";
import type { PackageInfo } from "./plugin-commands.js";
import type { PluginEvent } from "./plugin-events.js";
import { Flags, has, initialPluginState, type PluginState } from "./plugin-state.js";

/** State fields an install and an upgrade both take from the package they record. */
function packageFields(d: PackageInfo & { generation: number }) {
  return {
    plugin_type: d.plugin_type,
    callback_module: d.callback_module ?? null,
    oci_image: d.oci?.image ?? d.oci_image ?? null,
    oci: d.oci ?? null,
    package_url: d.source,
    installed_version: d.version,
    generation: d.generation,
  };
}

/** The state after event `e` on state `s`. */
export function evolve(s: PluginState, e: RecordedEvent | PluginEvent): PluginState {
  const ev = e as PluginEvent;
  const at = (ev.data as { at?: string }).at ?? null;
  const base = { ...s, updated_at: at ?? s.updated_at };
  switch (ev.type) {
    case "plugin_installed_v1": {
      const d = ev.data;
      return {
        ...initialPluginState,
        plugin_id: d.name,
        name: d.name,
        ...packageFields(d),
        icon: d.icon ?? null,
        group_name: d.group_name ?? null,
        group_icon: d.group_icon ?? null,
        installed_at: d.at,
        updated_at: d.at,
        activation: s.activation,
        status: Flags.INSTALLED | Flags.EXTRACTING,
      };
    }
    case "plugin_upgraded_v1": {
      const d = ev.data;
      return {
        ...base,
        ...packageFields(d),
        upgraded_at: d.at,
        status: (s.status & ~Flags.FAILED) | Flags.EXTRACTING,
      };
    }
    case "plugin_package_extracted_v1":
      return {
        ...base,
        extracted_at: ev.data.at,
        status: (s.status & ~Flags.EXTRACTING) | Flags.EXTRACTED,
      };
    case "plugin_extract_failed_v1": {
      const loaded = has(s.status, Flags.LOADED); // a failed upgrade leaves the running version alone
      return {
        ...base,
        last_error: { stage: "extract", code: ev.data.code, message: ev.data.message, at: ev.data.at },
        status: (s.status & ~Flags.EXTRACTING) | (loaded ? 0 : Flags.FAILED),
      };
    }
    case "plugin_activated_v1":
      return {
        ...base,
        activated_at: ev.data.at,
        activation: ev.data.activation,
        status: (s.status & ~(Flags.DEACTIVATED | Flags.FAILED | Flags.LOADED)) | Flags.ACTIVATED,
      };
    case "plugin_deactivated_v1":
      return {
        ...base,
        deactivated_at: ev.data.at,
        loaded_version: null,
        routes: [],
        status: (s.status & ~(Flags.ACTIVATED | Flags.LOADED | Flags.FAILED)) | Flags.DEACTIVATED,
      };
    case "plugin_load_confirmed_v1":
      return {
        ...base,
        loaded_at: ev.data.at,
        loaded_version: ev.data.version,
        routes: ev.data.routes,
        last_error: null,
        status: (s.status & ~Flags.FAILED) | Flags.LOADED,
      };
    case "plugin_load_failed_v1": {
      // A failed swap (upgrade) keeps the old version serving; a failed first load marks the plugin failed.
      const keep = has(s.status, Flags.LOADED) && s.loaded_version !== null && s.loaded_version !== ev.data.version;
      return {
        ...base,
        last_error: { stage: ev.data.stage, code: "load_failed", message: ev.data.message, at: ev.data.at },
        status: keep ? s.status : (s.status & ~Flags.LOADED) | Flags.FAILED,
        loaded_version: keep ? s.loaded_version : null,
        routes: keep ? s.routes : [],
      };
    }
    case "plugin_unload_confirmed_v1":
      return base;
    case "plugin_crashed_v1":
      return {
        ...base,
        restarts: s.restarts + 1,
        last_error: { stage: "runtime", code: "crashed", message: ev.data.reason, at: ev.data.at },
      };
    case "plugin_disabled_v1":
      return {
        ...base,
        last_error: { stage: "runtime", code: "disabled", message: ev.data.reason, at: ev.data.at },
        loaded_version: null,
        routes: [],
        status: (s.status & ~Flags.LOADED) | Flags.FAILED,
      };
    case "plugin_quarantined_v1":
      // Deactivated (not loaded at boot, `activate` brings it back) and marked failed with the cause.
      return {
        ...base,
        deactivated_at: ev.data.at,
        last_error: { stage: "host", code: "quarantined", message: ev.data.reason, at: ev.data.at },
        loaded_version: null,
        routes: [],
        status: (s.status & ~(Flags.ACTIVATED | Flags.LOADED)) | Flags.DEACTIVATED | Flags.FAILED,
      };
    case "plugin_package_rejected_v1":
      // The refused package never touched the installed one: status unchanged, only the error is shown.
      return {
        ...base,
        last_error: { stage: "package", code: ev.data.code, message: ev.data.message, at: ev.data.at },
      };
    case "plugin_settings_changed_v1":
      return { ...base, settings: ev.data.values };
    case "oci_pull_started_v1":
    case "oci_pull_progressed_v1":
    case "oci_pull_completed_v1":
    case "oci_pull_failed_v1":
    case "oci_pull_cancelled_v1":
      return evolvePull(base, s, ev);
    case "plugin_execution_started_v1":
      return { ...base, started_at: ev.data.at, status: (s.status & ~Flags.STOPPED) | Flags.RUNNING };
    case "plugin_execution_stopped_v1":
      return {
        ...base,
        stopped_at: ev.data.at,
        status: (s.status & ~(Flags.RUNNING | Flags.CONFIRMED_UP | Flags.CONFIRMED_DOWN)) | Flags.STOPPED,
      };
    case "container_confirmed_up_v1":
      return { ...base, status: (s.status & ~Flags.CONFIRMED_DOWN) | Flags.CONFIRMED_UP };
    case "container_confirmed_down_v1":
      return { ...base, status: (s.status & ~Flags.CONFIRMED_UP) | Flags.CONFIRMED_DOWN };
    case "plugin_removed_v1":
      return {
        ...base,
        removed_at: ev.data.at,
        loaded_version: null,
        routes: [],
        status: Flags.REMOVED,
      };
    default:
      return s;
  }
}

type PullEvent = Extract<PluginEvent, { type: `oci_pull_${string}` }>;

function evolvePull(base: PluginState, s: PluginState, ev: PullEvent): PluginState {
  switch (ev.type) {
    case "oci_pull_started_v1": {
      const d = ev.data;
      const pull = { generation: d.generation, reference: d.reference, digest: d.digest, layers_total: d.layers };
      return {
        ...base,
        pull: { ...pull, layers_done: 0, bytes_total: d.bytes, bytes_done: 0 },
        status: s.status | Flags.PULLING,
      };
    }
    case "oci_pull_progressed_v1":
      return s.pull
        ? { ...base, pull: { ...s.pull, layers_done: ev.data.layers_done, bytes_done: ev.data.bytes_done } }
        : base;
    case "oci_pull_completed_v1":
      return { ...base, pull: null, status: s.status & ~Flags.PULLING };
    case "oci_pull_failed_v1": {
      const loaded = has(s.status, Flags.LOADED); // a failed upgrade leaves the running version alone
      return {
        ...base,
        pull: null,
        last_error: { stage: "pull", code: ev.data.code, message: ev.data.message, at: ev.data.at },
        status: (s.status & ~(Flags.PULLING | Flags.EXTRACTING)) | (loaded ? 0 : Flags.FAILED),
      };
    }
    default:
      // A cancelled first install leaves nothing (as removed); a cancelled upgrade leaves the running version.
      if (ev.data.first_install)
        return { ...base, pull: null, removed_at: ev.data.at, loaded_version: null, routes: [], status: Flags.REMOVED };
      return {
        ...base,
        pull: null,
        installed_version: s.loaded_version ?? s.installed_version,
        status: s.status & ~(Flags.PULLING | Flags.EXTRACTING),
      };
  }
}
