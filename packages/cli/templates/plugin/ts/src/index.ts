/**
 * Callback module of the {{name}} plugin. The daemon runs it in its own worker thread and mounts its routes under
 * /plugin/{{name}}/api/ ; files in priv/static/ are served at /plugin/{{name}}/ .
 */
import { readFileSync } from "node:fs";
import { HttpError, type PluginConfig, type PluginManifest, type RouteDefinition } from "@hecate/sdk";

type Note = { id: string; text: string };

let config: PluginConfig | undefined;
const notes = new Map<string, Note>();

export function manifest(): PluginManifest {
  // manifest.json sits at the package root: two levels above dist/src/index.js
  return JSON.parse(readFileSync(new URL("../../manifest.json", import.meta.url), "utf8")) as PluginManifest;
}

export function init(cfg: PluginConfig): void {
  config = cfg;
}

export function routes(): RouteDefinition[] {
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
        const body = await req.json<{ text?: unknown }>();
        if (typeof body.text !== "string" || body.text.length === 0) {
          throw new HttpError(400, "invalid_note", "text must be a non-empty string", { field: "text" });
        }
        const note: Note = { id: String(notes.size + 1), text: body.text };
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
