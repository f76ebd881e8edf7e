/**
 * The app shell's public, read-only view of the plugins (`GET /api/shell/plugins` and the SSE stream
 * `GET /api/shell/events`): name, version, status, UI entry. No admin data, no token.
 *
 * Source: the plugin host's own router, the cheapest honest one — a plugin is in the list exactly while its routes
 * and static files are mounted (loaded, swapped on upgrade, removed at unload), and the installed-but-not-loaded
 * plugins are the supervisor's `set-inactive` set the router already holds for its 503 answers. Every change of
 * either pushes the whole (small) list to the streams, coalesced over a few milliseconds; a client never has to
 * apply deltas in order.
 */
import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
// The narrow entry points, not "@hecate/sdk": its index pulls in the store (SQLite, PostgreSQL), validation, files...,
// which every plugin host then loaded at start (about half of its start-up time).
import { isValidElementName, type PluginManifest, type ShellPlugin } from "@hecate/sdk/contract";
import { pluginPaths } from "@hecate/sdk/paths";
import type { MountedRoute, PluginMount, Router } from "../router.js";
import { openEventStream } from "../sse.js";
import { safeSegments } from "../static.js";

/** Coalescing delay of change pushes (a swap mounts, then unmounts the old: one push). */
const PUSH_DELAY_MS = 20;

export class ShellCatalog {
  private readonly streams = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly router: Router,
    private readonly home: string,
  ) {
    router.onPluginsChanged(() => this.schedule());
  }

  /** The plugins as the public endpoint lists them, by name. */
  list(): ShellPlugin[] {
    const out: ShellPlugin[] = [];
    for (const [name, mount] of this.router.mounted()) {
      const m = this.manifestOf(name, mount);
      const p: ShellPlugin = { name, version: m?.version ?? "", status: "loaded", apiBase: `/plugin/${name}/api` };
      if (typeof m?.icon === "string") p.icon = m.icon;
      if (typeof m?.description === "string") p.description = m.description;
      const ui = m && uiOf(name, m, mount);
      if (ui) p.ui = ui;
      out.push(p);
    }
    for (const name of this.router.inactiveNames())
      if (!this.router.mounted().has(name))
        out.push({ name, version: "", status: "inactive", apiBase: `/plugin/${name}/api` });
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The static dir of a loaded plugin whose UI is sandboxed (served with CORS to its opaque-origin frame). */
  sandboxedStaticDir(name: string): string | undefined {
    const mount = this.router.mounted().get(name);
    const m = mount && this.manifestOf(name, mount);
    return m && uiOf(name, m, mount)?.sandboxed ? mount.staticDir : undefined;
  }

  routes(): MountedRoute[] {
    return [
      {
        method: "GET",
        path: "/api/shell/plugins",
        handler: (_req, res) => {
          const body = JSON.stringify({ plugins: this.list() });
          res.writeHead(200, {
            "content-type": "application/json; charset=utf-8",
            "content-length": Buffer.byteLength(body),
            "cache-control": "no-store",
          });
          res.end(body);
        },
      },
      { method: "GET", path: "/api/shell/events", handler: (req, res) => this.stream(req, res) },
    ];
  }

  /** Ends every stream (host shutdown). */
  close(): void {
    clearTimeout(this.timer);
    for (const s of this.streams) s.end();
    this.streams.clear();
  }

  private stream(req: IncomingMessage, res: ServerResponse): void {
    if (openEventStream(req, res, this.streams))
      res.write(`retry: 1000\nevent: plugins\ndata: ${JSON.stringify({ plugins: this.list() })}\n\n`);
  }

  private schedule(): void {
    if (this.timer || this.streams.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const body = JSON.stringify({ plugins: this.list() });
      for (const s of this.streams) s.write(`event: plugins\ndata: ${body}\n\n`);
    }, PUSH_DELAY_MS);
  }

  /**
   * The mount's manifest (worker and container mounts carry the installed manifest.json); a plugin served by an
   * isolated host is mounted here as a proxy without one, so its installed manifest.json is read.
   */
  private manifestOf(name: string, mount: Readonly<PluginMount>): Partial<PluginManifest> | undefined {
    if (mount.manifest && typeof mount.manifest === "object") return mount.manifest as Partial<PluginManifest>;
    try {
      return JSON.parse(readFileSync(pluginPaths(this.home, name).manifest, "utf8"));
    } catch {
      return undefined;
    }
  }
}

/**
 * The UI entry of a manifest, checked again here (a worker's `manifest()` answer is not schema-validated): a valid
 * element name and a module path inside the static dir, else none. Container plugins (`plugin_type: "container"`,
 * the rule the loader uses) are untrusted code: their UI is mounted in a sandboxed iframe.
 */
function uiOf(name: string, m: Partial<PluginManifest>, mount: Readonly<PluginMount>): ShellPlugin["ui"] {
  const ui = m.ui;
  if (!ui || !mount.staticDir || !isValidElementName(ui.element) || typeof ui.module !== "string") return undefined;
  const segs = safeSegments(ui.module.split("/").map(encodeURIComponent).join("/"));
  if (!segs || segs.length === 0 || !/\.m?js$/.test(ui.module)) return undefined;
  const sandboxed = m.plugin_type === "container";
  const path = segs.map(encodeURIComponent).join("/");
  return {
    element: ui.element,
    module: ui.module,
    url: sandboxed ? `/shell/ui/${name}/${path}` : `/plugin/${name}/${path}`,
    sandboxed,
  };
}
