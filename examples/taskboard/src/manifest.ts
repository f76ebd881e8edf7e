import type { PluginManifest } from "@hecate/sdk";

/** The plugin's manifest; `npm run build` writes it to manifest.json (scripts/write-manifest.mjs) for `hecate plugin pack`. */
export const manifest: PluginManifest = {
  name: "taskboard",
  version: "0.1.0",
  description: "A shared task board: columns, tasks, file attachments and live updates",
  plugin_type: "in_process",
  callback_module: "dist/src/index.js",
  engines: { hecate: ">=0.1.0" },
  static: "priv/static",
  // The app shell (GET / on the plugin port) mounts this element; priv/static/ui.js default-exports its class.
  ui: { element: "taskboard-app", module: "ui.js" },
  icon: "📋",
  group_name: "Examples",
  settings: {
    type: "object",
    additionalProperties: false,
    properties: {
      retentionHours: {
        type: "number",
        minimum: 0,
        default: 168,
        description: "Completed tasks older than this are deleted by the cleanup job",
      },
      cleanupIntervalSeconds: { type: "number", minimum: 1, default: 600 },
      maxAttachmentBytes: { type: "integer", minimum: 1, default: 20971520 },
      rateLimit: {
        type: "object",
        additionalProperties: false,
        properties: {
          capacity: { type: "integer", minimum: 1, default: 60 },
          refillPerSecond: { type: "number", exclusiveMinimum: 0, default: 10 },
        },
      },
    },
  },
};
