/**
 * The `plugin` aggregate (stream `plugin-{name}` in the daemon's `plugins` store): the original's lifecycle with its
 * exact command / event / status names, plus failure events of our own so users can see why something failed.
 *
 * `decide` is pure: side effects (extraction, loading, unloading, deleting files) happen in the process managers
 * (process-managers.ts), which report their outcome back as commands (extract_plugin_package_v1 carries the result
 * of the extraction, confirm_plugin_loaded_v1 / fail_plugin_load_v1 the result of the load).
 */
import { isValidPluginName } from "@hecate/sdk";
import { type AggregateDefinition, type Command, type RecordedEvent, type Rejection, reject } from "@hecate/store";

/** Status bit flags (the original's names; EXTRACTED, LOADED and FAILED are ours). */
export const Flags = {
  INSTALLED: 1,
  REMOVED: 1 << 1,
  EXTRACTING: 1 << 2,
  ACTIVATED: 1 << 3,
  DEACTIVATED: 1 << 4,
  RUNNING: 1 << 5,
  STOPPED: 1 << 6,
  PULLING: 1 << 7,
  CONFIRMED_UP: 1 << 8,
  CONFIRMED_DOWN: 1 << 9,
  EXTRACTED: 1 << 10,
  LOADED: 1 << 11,
  FAILED: 1 << 12,
} as const;
export type FlagName = keyof typeof Flags;

export function flagNames(status: number): FlagName[] {
  return (Object.keys(Flags) as FlagName[]).filter((k) => (status & Flags[k]) !== 0);
}

const has = (s: number, f: number) => (s & f) !== 0;

/** True when the plugin's status has flag `f` (one of `Flags`). */
export const hasFlag = (s: PluginState, f: number): boolean => has(s.status, f);

export type PluginType = "in_process" | "container";

export interface LastError {
  stage: string;
  code: string;
  message: string;
  at: string;
}

export interface PluginState {
  status: number;
  plugin_id: string | null;
  name: string | null;
  plugin_type: PluginType;
  callback_module: string | null;
  oci_image: string | null;
  /** Where the package came from ("upload", the operator's path, or the URL it was downloaded from). */
  package_url: string | null;
  installed_version: string | null;
  license_id: string | null;
  icon: string | null;
  group_name: string | null;
  group_icon: string | null;
  installed_at: string | null;
  upgraded_at: string | null;
  removed_at: string | null;
  extracted_at: string | null;
  activated_at: string | null;
  deactivated_at: string | null;
  started_at: string | null;
  stopped_at: string | null;
  loaded_at: string | null;
  updated_at: string | null;
  /** Bumped by every install / upgrade: process-manager work for an older package is stale and skipped. */
  generation: number;
  /** Bumped by every activation: a load for an older activation is stale and skipped. */
  activation: number;
  /** Version actually loaded (differs from installed_version while an upgrade is in flight). */
  loaded_version: string | null;
  routes: { method: string; path: string }[];
  last_error: LastError | null;
  restarts: number;
  /**
   * The operator's settings in their stored form (secrets encrypted: see settings.ts), from the last
   * plugin_settings_changed_v1. Kept across upgrades; a (re)install starts without.
   */
  settings: Record<string, unknown>;
  /** The registry image of a plugin installed from `oci://` (reference, digest, layers), null otherwise. */
  oci: OciSource | null;
  /** The image pull in flight (container plugins installed from an OCI registry), null when none. */
  pull: OciPullProgress | null;
}

/** Where an OCI pull is: layers and bytes (bytes count the layers known to be complete). */
export interface OciPullProgress {
  generation: number;
  reference: string;
  digest: string;
  layers_total: number;
  layers_done: number;
  bytes_total: number;
  bytes_done: number;
}

export const initialPluginState: PluginState = {
  status: 0,
  plugin_id: null,
  name: null,
  plugin_type: "in_process",
  callback_module: null,
  oci_image: null,
  package_url: null,
  installed_version: null,
  license_id: null,
  icon: null,
  group_name: null,
  group_icon: null,
  installed_at: null,
  upgraded_at: null,
  removed_at: null,
  extracted_at: null,
  activated_at: null,
  deactivated_at: null,
  started_at: null,
  stopped_at: null,
  loaded_at: null,
  updated_at: null,
  generation: 0,
  activation: 0,
  loaded_version: null,
  routes: [],
  last_error: null,
  restarts: 0,
  settings: {},
  oci: null,
  pull: null,
};

// ---- commands ----

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

export interface OciSource {
  reference: string;
  image: string;
  digest: string;
  layers: number;
  bytes: number;
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

const now = () => new Date().toISOString();

function invalid(message: string, field: string): Rejection<RejectionCode> {
  return reject("invalid_command", message, { field });
}

function checkPackage(p: PackageInfo | undefined): Rejection<RejectionCode> | null {
  if (!p || typeof p !== "object") return invalid("command data is required", "data");
  if (typeof p.name !== "string" || !isValidPluginName(p.name))
    return reject("invalid_plugin_name", `invalid plugin name ${JSON.stringify(p.name)}: [a-z0-9][a-z0-9_-]{0,63}`, {
      field: "name",
    });
  if (typeof p.version !== "string" || p.version === "") return invalid("version is required", "version");
  if (p.plugin_type !== "in_process" && p.plugin_type !== "container")
    return invalid(`plugin_type must be "in_process" or "container"`, "plugin_type");
  if (typeof p.source !== "string") return invalid("source is required", "source");
  return null;
}

const installed = (s: PluginState) => has(s.status, Flags.INSTALLED) && !has(s.status, Flags.REMOVED);

/**
 * Whether `install_plugin_v1` is accepted: nothing installed (never, or removed), or the last attempt FAILED and the
 * plugin is neither ACTIVATED nor LOADED (e.g. its extraction was refused: digest_mismatch, not_gzip, ...), so
 * nothing runs that an install could clobber. Such an install is a fresh attempt (new generation; the stream keeps
 * the failed history). A healthy, activated or loaded plugin still needs upgrade.
 */
export function acceptsInstall(s: PluginState): boolean {
  if (!installed(s)) return true;
  return has(s.status, Flags.FAILED) && !has(s.status, Flags.ACTIVATED | Flags.LOADED);
}

function decide(cmd: PluginCommand, s: PluginState): PluginEvent[] | Rejection<RejectionCode> {
  const at = now();
  switch (cmd.type) {
    case "install_plugin_v1": {
      const bad = checkPackage(cmd.data);
      if (bad) return bad;
      if (!acceptsInstall(s))
        return reject("plugin_already_installed", `plugin ${cmd.data.name} is already installed (use upgrade)`);
      return [{ type: "plugin_installed_v1", data: { ...cmd.data, generation: s.generation + 1, at } }];
    }
    case "upgrade_plugin_v1": {
      const bad = checkPackage(cmd.data);
      if (bad) return bad;
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${cmd.data.name} is not installed`);
      if (s.name !== cmd.data.name) return invalid(`package is for ${cmd.data.name}, not ${s.name}`, "name");
      return [
        {
          type: "plugin_upgraded_v1",
          data: { ...cmd.data, generation: s.generation + 1, previous_version: s.installed_version ?? "", at },
        },
      ];
    }
    case "remove_plugin_v1":
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      return [{ type: "plugin_removed_v1", data: { purge: cmd.data?.purge === true, at } }];
    case "extract_plugin_package_v1":
    case "fail_plugin_extract_v1":
      if (!installed(s)) return reject("plugin_not_installed", "plugin is not installed");
      if (cmd.data.generation !== s.generation || !has(s.status, Flags.EXTRACTING))
        return reject("stale_command", `package generation ${cmd.data.generation} is not the one being extracted`);
      return cmd.type === "extract_plugin_package_v1"
        ? [{ type: "plugin_package_extracted_v1", data: { ...cmd.data, at } }]
        : [{ type: "plugin_extract_failed_v1", data: { ...cmd.data, at } }];
    case "activate_plugin_v1":
      if (!installed(s)) return reject("plugin_not_installed", "plugin is not installed");
      if (!has(s.status, Flags.EXTRACTED)) return reject("plugin_not_extracted", "the package is not extracted yet");
      // A failed activation may be retried; a healthy one may not be repeated.
      if (has(s.status, Flags.ACTIVATED) && !has(s.status, Flags.FAILED))
        return reject("plugin_already_activated", `plugin ${s.name} is already activated`);
      return [{ type: "plugin_activated_v1", data: { activation: s.activation + 1, at } }];
    case "deactivate_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", `plugin ${s.name ?? ""} is not activated`);
      return [{ type: "plugin_deactivated_v1", data: { at } }];
    case "confirm_plugin_loaded_v1":
    case "fail_plugin_load_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      if (cmd.data.activation !== s.activation)
        return reject("stale_command", `activation ${cmd.data.activation} is not the current one`);
      if (cmd.type === "confirm_plugin_loaded_v1") {
        // A boot-time reload of a plugin already marked loaded with this version changes nothing.
        if (cmd.data.boot && has(s.status, Flags.LOADED) && s.loaded_version === cmd.data.version) return [];
        const { boot: _boot, ...data } = cmd.data;
        return [{ type: "plugin_load_confirmed_v1", data: { ...data, at } }];
      }
      return [{ type: "plugin_load_failed_v1", data: { ...cmd.data, at } }];
    case "confirm_plugin_unloaded_v1":
      if (!installed(s) || has(s.status, Flags.ACTIVATED))
        return reject("plugin_already_activated", "plugin is activated again");
      return [{ type: "plugin_unload_confirmed_v1", data: { at } }];
    case "report_plugin_crash_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_crashed_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "disable_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_disabled_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "quarantine_plugin_v1":
      if (!installed(s) || !has(s.status, Flags.ACTIVATED))
        return reject("plugin_not_activated", "plugin is not activated");
      return [{ type: "plugin_quarantined_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "reject_plugin_package_v1":
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      if (typeof cmd.data?.code !== "string" || typeof cmd.data.message !== "string")
        return invalid("code and message are required", "code");
      return [{ type: "plugin_package_rejected_v1", data: { ...cmd.data, at } }];
    case "change_plugin_settings_v1": {
      if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
      const d = cmd.data;
      if (!d || typeof d.values !== "object" || d.values === null || Array.isArray(d.values))
        return invalid("values must be an object", "values");
      return [
        {
          type: "plugin_settings_changed_v1",
          data: {
            values: d.values,
            changed: d.changed ?? [],
            unset: d.unset ?? [],
            reset: d.reset === true,
            at,
          },
        },
      ];
    }
    case "start_oci_pull_v1":
    case "report_oci_pull_progress_v1":
    case "complete_oci_pull_v1":
    case "fail_oci_pull_v1":
    case "cancel_oci_pull_v1":
      return decidePull(cmd, s, at);
    case "start_plugin_execution_v1":
    case "stop_plugin_execution_v1":
    case "confirm_container_up_v1":
    case "confirm_container_down_v1":
      return decideExecution(cmd, s, at);
    default:
      return invalid(`unknown command ${JSON.stringify((cmd as { type: unknown }).type)}`, "type");
  }
}

type PullCommand = Extract<
  PluginCommand,
  { type: `${"start" | "report" | "complete" | "fail" | "cancel"}_oci_pull${string}` }
>;

/** The pull rules: start while PULLING -> already_pulling; progress / complete / fail / cancel when not -> not_pulling. */
function decidePull(cmd: PullCommand, s: PluginState, at: string): PluginEvent[] | Rejection<RejectionCode> {
  if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
  const pulling = has(s.status, Flags.PULLING);
  if (cmd.type === "start_oci_pull_v1") {
    if (pulling) return reject("already_pulling", `plugin ${s.name} is already pulling its image`);
    const src = s.oci;
    if (!src || cmd.data.generation !== s.generation || !has(s.status, Flags.EXTRACTING))
      return reject("stale_command", `package generation ${cmd.data.generation} is not waiting for a pull`);
    return [
      {
        type: "oci_pull_started_v1",
        data: {
          generation: s.generation,
          reference: src.reference,
          image: src.image,
          digest: src.digest,
          layers: src.layers,
          bytes: src.bytes,
          at,
        },
      },
    ];
  }
  if (!pulling) return reject("not_pulling", `plugin ${s.name} is not pulling an image`);
  if (cmd.type === "cancel_oci_pull_v1") {
    const first = !has(s.status, Flags.LOADED) && s.loaded_version === null;
    return [
      {
        type: "oci_pull_cancelled_v1",
        data: { generation: s.generation, reason: String(cmd.data?.reason ?? "cancelled"), first_install: first, at },
      },
    ];
  }
  if (cmd.data.generation !== s.generation)
    return reject("stale_command", `pull of generation ${cmd.data.generation} is not the current one`);
  switch (cmd.type) {
    case "report_oci_pull_progress_v1":
      return [{ type: "oci_pull_progressed_v1", data: { ...cmd.data, at } }];
    case "complete_oci_pull_v1":
      return [{ type: "oci_pull_completed_v1", data: { ...cmd.data, at } }];
    default:
      return [{ type: "oci_pull_failed_v1", data: { ...cmd.data, at } }];
  }
}

type ExecutionCommand = Extract<
  PluginCommand,
  {
    type:
      | "start_plugin_execution_v1"
      | "stop_plugin_execution_v1"
      | "confirm_container_up_v1"
      | "confirm_container_down_v1";
  }
>;

/**
 * Execution of a container plugin: start when RUNNING -> plugin_already_running, stop when not -> plugin_not_running.
 * The health confirmations record transitions only: up when already CONFIRMED_UP (or down when CONFIRMED_DOWN)
 * records nothing.
 */
function decideExecution(cmd: ExecutionCommand, s: PluginState, at: string): PluginEvent[] | Rejection<RejectionCode> {
  if (!installed(s)) return reject("plugin_not_installed", `plugin ${s.name ?? ""} is not installed`);
  const running = has(s.status, Flags.RUNNING);
  switch (cmd.type) {
    case "start_plugin_execution_v1":
      if (running) return reject("plugin_already_running", `plugin ${s.name} is already running`);
      return [{ type: "plugin_execution_started_v1", data: { at } }];
    case "stop_plugin_execution_v1":
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return [{ type: "plugin_execution_stopped_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
    case "confirm_container_up_v1":
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return has(s.status, Flags.CONFIRMED_UP) ? [] : [{ type: "container_confirmed_up_v1", data: { at } }];
    default:
      if (!running) return reject("plugin_not_running", `plugin ${s.name} is not running`);
      return has(s.status, Flags.CONFIRMED_DOWN)
        ? []
        : [{ type: "container_confirmed_down_v1", data: { reason: String(cmd.data?.reason ?? ""), at } }];
  }
}

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

function evolve(s: PluginState, e: RecordedEvent | PluginEvent): PluginState {
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

export const pluginAggregate: AggregateDefinition<PluginState, PluginCommand, PluginEvent> = {
  name: "plugin",
  initialState: initialPluginState,
  evolve,
  decide,
  snapshotEvery: 50,
  // 2: PluginState.settings (a version-1 snapshot lacks it: it is folded again from the events).
  // 3: PluginState.oci / pull (OCI installs).
  snapshotVersion: 3,
};

export type PluginStatusName =
  | "installed"
  | "pulling"
  | "extracting"
  | "extracted"
  | "activated"
  | "loaded"
  | "deactivated"
  | "failed"
  | "removed";

/** One word for the flag set (the view's `status`). */
export function statusName(status: number): PluginStatusName {
  if (has(status, Flags.REMOVED)) return "removed";
  if (has(status, Flags.FAILED)) return "failed";
  if (has(status, Flags.PULLING)) return "pulling";
  if (has(status, Flags.EXTRACTING)) return "extracting";
  if (has(status, Flags.LOADED)) return "loaded";
  if (has(status, Flags.ACTIVATED)) return "activated";
  if (has(status, Flags.DEACTIVATED)) return "deactivated";
  if (has(status, Flags.EXTRACTED)) return "extracted";
  return "installed";
}
