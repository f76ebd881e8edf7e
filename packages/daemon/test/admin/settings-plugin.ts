/** The test plugin of the settings tests (API, CLI, page): a schema with every field kind and a secret. */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { PluginSource } from "../lifecycle/helpers.js";

/** Every regular file under `dir` (SQLite files and their WAL included) that holds `secret` in clear. */
export function filesHolding(dir: string, secret: string): { leaks: string[]; files: number } {
  const all: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) all.push(p);
    }
  };
  walk(dir);
  const needle = Buffer.from(secret);
  return { leaks: all.filter((f) => readFileSync(f).includes(needle)), files: all.length };
}

export function settingsSchema(maxLimit: number) {
  return {
    type: "object",
    additionalProperties: false,
    properties: {
      greeting: { type: "string", default: "hi" },
      limit: { type: "integer", minimum: 1, maximum: maxLimit },
      mode: { type: "string", enum: ["fast", "safe"] },
      verbose: { type: "boolean" },
      apiKey: { type: "string", writeOnly: true, minLength: 8 },
    },
  };
}

/** A plugin that shows what it got (the secret only as its sha256), with or without onSettingsChanged. */
export function settingsPlugin(version: string, opts: { callback: boolean; maxLimit?: number }): PluginSource {
  return {
    name: "cfg",
    version,
    manifest: { settings: settingsSchema(opts.maxLimit ?? 1000) },
    extra: `
import { createHash, randomUUID } from "node:crypto";
import { getConfig } from "@hecate/sdk";
const instance = randomUUID();
let initSettings = null;
let changes = 0;
const digest = (s) => s && ({ ...s, apiKey: typeof s.apiKey === "string" ? createHash("sha256").update(s.apiKey).digest("hex") : null });
${opts.callback ? `export async function onSettingsChanged(settings) { changes++; console.log("settings changed: " + Object.keys(settings).sort().join(",")); }` : ""}
`,
    init: "initSettings = config.settings;",
    routes: `{ method: "GET", path: "/settings", handler: () => ({ instance, changes, init: digest(initSettings), now: digest(getConfig().settings) }) },`,
  };
}
