/**
 * `hecate plugin config NAME [key=value ...] [--unset key ...]`: shows or changes a plugin's settings through
 * `GET` / `PUT /admin/api/plugins/{name}/settings`. A value is parsed as JSON when it parses (`limit=5` is a number,
 * `on=true` a boolean, `tags=["a"]` an array), else it is the string as typed (`greeting=hello`); quote a JSON string
 * to force one (`code='"007"'`). Secrets (`writeOnly` fields) are never shown, only whether they are set.
 */
import { CliError, EXIT } from "../errors.js";
import type { CommandContext } from "./plugin.js";

interface SettingsView {
  plugin: string;
  schema: { properties?: Record<string, { default?: unknown; description?: string }> } | null;
  values: Record<string, unknown>;
  secrets: Record<string, { set: boolean }>;
  applied?: "live" | "swap" | "none" | "failed";
  applyError?: string;
}

/** `key=value` -> [key, value parsed as JSON when it parses, else the raw string]. */
export function parseAssignment(arg: string): [string, unknown] {
  const eq = arg.indexOf("=");
  if (eq <= 0) throw new CliError("usage", `expected key=value, got ${JSON.stringify(arg)}`, EXIT.USAGE);
  const key = arg.slice(0, eq);
  const raw = arg.slice(eq + 1);
  try {
    return [key, JSON.parse(raw)];
  } catch {
    return [key, raw];
  }
}

const APPLIED: Record<string, string> = {
  live: "applied live (onSettingsChanged)",
  swap: "applied by swapping the plugin (zero downtime)",
  none: "stored; the plugin gets them when it is next loaded",
  failed: "stored, but the plugin could not be swapped",
};

function describe(v: SettingsView): string {
  const props = v.schema?.properties ?? {};
  const names = [...new Set([...Object.keys(props), ...Object.keys(v.values), ...Object.keys(v.secrets)])];
  if (names.length === 0) return `${v.plugin} declares no settings`;
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((n) => {
    const label = n.padEnd(width);
    if (n in v.secrets) return `  ${label}  ${v.secrets[n]!.set ? "******** (secret, set)" : "(secret, not set)"}`;
    if (n in v.values) return `  ${label}  ${JSON.stringify(v.values[n])}`;
    const d = props[n]?.default;
    return `  ${label}  (not set${d !== undefined ? `; default ${JSON.stringify(d)}` : ""})`;
  });
  return [`${v.plugin} settings:`, ...lines].join("\n");
}

export async function configCommand(
  ctx: CommandContext,
  name: string,
  assignments: string[],
  opts: { unset?: string[] },
): Promise<void> {
  const path = `/admin/api/plugins/${encodeURIComponent(name)}/settings`;
  const unset = opts.unset ?? [];
  if (assignments.length === 0 && unset.length === 0) {
    const view = await ctx.client.call<SettingsView>("GET", path);
    ctx.out.result(view, () => ctx.out.line(describe(view)));
    return;
  }
  const values = Object.fromEntries(assignments.map(parseAssignment));
  let view: SettingsView;
  try {
    view = await ctx.client.call<SettingsView>("PUT", path, { json: { values, unset } });
  } catch (err) {
    // A value the schema refuses is a bad command line: exit 2 with the field errors.
    if (err instanceof CliError && (err.code === "invalid_settings" || err.code === "invalid_body"))
      throw new CliError(err.code, err.message, EXIT.USAGE, err.details, err.status);
    throw err;
  }
  ctx.out.result(view, () => {
    ctx.out.line(describe(view));
    ctx.out.line(`${APPLIED[view.applied ?? "none"]}${view.applyError ? `: ${view.applyError}` : ""}`);
  });
}
