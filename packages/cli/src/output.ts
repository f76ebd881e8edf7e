/** Human and JSON output of the CLI. Human text goes to stdout, progress to stderr, JSON only to stdout. */
import Table from "cli-table3";
import type { LogLine, PluginListAnswer, PluginView, StoredEvent } from "./client.js";
import { CliError } from "./errors.js";

export interface Output {
  json: boolean;
  /** Human-readable line (suppressed with --json). */
  line(text: string): void;
  /** Progress line on stderr (suppressed with --json). */
  progress(text: string): void;
  /** The command's result: printed as JSON with --json, otherwise through `human`. */
  result(value: unknown, human?: () => void): void;
}

export function createOutput(json: boolean): Output {
  return {
    json,
    line: (text) => {
      if (!json) process.stdout.write(`${text}\n`);
    },
    progress: (text) => {
      if (!json) process.stderr.write(`${text}\n`);
    },
    result: (value, human) => {
      if (json) process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
      else human?.();
    },
  };
}

export function printError(err: unknown, json: boolean): void {
  const e =
    err instanceof CliError
      ? { code: err.code, message: err.message, details: err.details }
      : { code: "internal", message: (err as Error)?.message ?? String(err) };
  if (json) {
    process.stdout.write(`${JSON.stringify({ error: e }, null, 2)}\n`);
    return;
  }
  // the code goes on the first line; further lines of the message (hints) follow it
  const [first, ...more] = e.message.split("\n");
  let text = [`error: ${first} [${e.code}]`, ...more].join("\n");
  // the plugin's whole view (in lifecycle failures) is for --json; people get the rest of the details
  const { plugin: _view, ...rest } =
    e.details && typeof e.details === "object" && !Array.isArray(e.details)
      ? (e.details as Record<string, unknown>)
      : {};
  const shown = e.details && typeof e.details === "object" && !Array.isArray(e.details) ? rest : e.details;
  if (shown !== undefined && !(typeof shown === "object" && shown && Object.keys(shown).length === 0)) {
    text += `\n  details: ${JSON.stringify(shown)}`;
  }
  process.stderr.write(`${text}\n`);
}

function routesSummary(view: PluginView): string {
  if (!view.routes?.length) return "-";
  const shown = view.routes.slice(0, 4).map((r) => `${r.method} ${r.path}`);
  if (view.routes.length > 4) shown.push(`+${view.routes.length - 4} more`);
  return shown.join("\n");
}

function lastErrorSummary(view: PluginView): string {
  if (!view.lastError) return "-";
  const msg = view.lastError.message.length > 60 ? `${view.lastError.message.slice(0, 57)}...` : view.lastError.message;
  return `${view.lastError.code}: ${msg}`;
}

/** Execution and pull flags of container plugins (the original's RUNNING, PULLING, CONFIRMED_UP...) under the status. */
const SHOWN_FLAGS = new Set(["PULLING", "RUNNING", "STOPPED", "CONFIRMED_UP", "CONFIRMED_DOWN"]);

function statusSummary(view: PluginView): string {
  const flags = (view.flags ?? []).filter((f) => SHOWN_FLAGS.has(f));
  return flags.length ? `${view.status}\n${flags.join(" ")}` : view.status;
}

/** The plugin list; in cluster mode with a NODES column (each node's own status) under a line naming the nodes. */
export function pluginTable(plugins: PluginListAnswer["plugins"], cluster?: PluginListAnswer["cluster"]): string {
  const head = cluster
    ? `cluster: this is node ${cluster.node}; nodes: ${cluster.nodes.map((n) => n.node).join(", ")}\n`
    : "";
  if (plugins.length === 0) return `${head}no plugins installed`;
  const table = new Table({
    head: ["NAME", "VERSION", "TYPE", "STATUS", ...(cluster ? ["NODES"] : []), "ROUTES", "LAST ERROR"],
    style: { head: [], border: [] },
    wordWrap: true,
  });
  for (const p of plugins) {
    const nodes = (p.nodes ?? [])
      .map((n) => `${n.node}: ${n.status}${n.version ? ` ${n.version}` : ""}${n.error ? ` (${n.error})` : ""}`)
      .join("\n");
    table.push([
      p.name,
      p.version,
      p.type,
      statusSummary(p),
      ...(cluster ? [nodes || "-"] : []),
      routesSummary(p),
      lastErrorSummary(p),
    ]);
  }
  return head + table.toString();
}

export function pluginDetails(view: PluginView, events: StoredEvent[], baseUrl: string | undefined): string {
  const lines = [
    `name:        ${view.name}`,
    `version:     ${view.version}`,
    `type:        ${view.type}`,
    `status:      ${view.status} (${view.flags.join(", ") || "-"})`,
    `url:         ${baseUrl ? new URL(view.url, baseUrl).href : view.url}`,
    ...(view.image ? [`image:       ${view.image}`] : []),
    ...(view.pull
      ? [`pull:        ${view.pull.layers_done}/${view.pull.layers_total} layers of ${view.pull.reference}`]
      : []),
    `installed:   ${view.installedAt}`,
    `updated:     ${view.updatedAt}`,
    `restarts:    ${view.restarts}`,
    `last error:  ${view.lastError ? `${view.lastError.stage}/${view.lastError.code}: ${view.lastError.message} (${view.lastError.at})` : "-"}`,
    "routes:",
    ...(view.routes.length ? view.routes.map((r) => `  ${r.method.padEnd(7)} ${r.path}`) : ["  -"]),
  ];
  if (view.manifest) {
    lines.push(
      "manifest:",
      ...JSON.stringify(view.manifest, null, 2)
        .split("\n")
        .map((l) => `  ${l}`),
    );
  }
  lines.push("history:");
  for (const e of events) {
    const extra = e.data && Object.keys(e.data).length ? ` ${summarizeData(e.data)}` : "";
    lines.push(`  #${String(e.revision).padEnd(3)} ${e.createdAt}  ${e.type}${extra}`);
  }
  return lines.join("\n");
}

function summarizeData(data: Record<string, unknown>): string {
  const text = JSON.stringify(data);
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

export function formatLogLine(l: LogLine): string {
  const time = typeof l.time === "number" ? new Date(l.time).toISOString() : l.time;
  const fields = l.fields && Object.keys(l.fields).length ? ` ${JSON.stringify(l.fields)}` : "";
  return `${time} ${String(l.level).toUpperCase().padEnd(5)} [${l.plugin}] ${l.msg}${fields}`;
}
