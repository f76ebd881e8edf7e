// @ts-check
/**
 * Callback module of the {{name}} plugin. The daemon runs it in its own worker thread and mounts its routes under
 * /plugin/{{name}}/api/ ; files in priv/static/ are served at /plugin/{{name}}/ .
 */
import { readFileSync } from "node:fs";
import { HttpError } from "@hecate/sdk";

/** @type {import("@hecate/sdk").PluginConfig | undefined} */
let config;
/** @type {Map<string, { id: string, text: string }>} */
const notes = new Map();

/** @returns {import("@hecate/sdk").PluginManifest} */
export function manifest() {
  return JSON.parse(readFileSync(new URL("../manifest.json", import.meta.url), "utf8"));
}

/** @param {import("@hecate/sdk").PluginConfig} cfg */
export function init(cfg) {
  config = cfg;
}

/** @returns {import("@hecate/sdk").RouteDefinition[]} */
export function routes() {
  return [
    {
      method: "GET",
      path: "/hello",
      handler: (req) => ({ hello: req.query.name ?? "world", plugin: config?.pluginName }),
    },
    {
      method: "POST",
      path: "/notes",
      handler: async (req) => {
        /** @type {{ text?: unknown }} */
        const body = await req.json();
        if (typeof body.text !== "string" || body.text.length === 0) {
          throw new HttpError(400, "invalid_note", "text must be a non-empty string", { field: "text" });
        }
        const note = { id: String(notes.size + 1), text: body.text };
        notes.set(note.id, note);
        return { status: 201, body: note };
      },
    },
    {
      method: "GET",
      path: "/notes/:id",
      handler: (req) => {
        const note = notes.get(req.params.id);
        if (!note) throw new HttpError(404, "note_not_found", `no note ${req.params.id}`);
        return note;
      },
    },
  ];
}
