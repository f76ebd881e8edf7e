/**
 * The app shell on the plugin listener: `GET /` is one page that composes every loaded plugin's UI (a custom
 * element from its manifest's `ui`), following the lifecycle live through the public endpoint of ./catalog.ts.
 * Static files shipped in the daemon package (packages/daemon/shell-ui/, no build step), like the admin page.
 *
 * Security:
 * - the shell page has a strict CSP: scripts from this origin only (plus the one inline import map, by hash), no
 *   inline script or style, no plugins, not framable. Trusted (in-process) plugins' elements run in the page;
 * - container plugins are untrusted: their UI runs in `/shell/frame/{name}`, a document sandboxed twice (the iframe's
 *   `sandbox="allow-scripts allow-forms"` and the CSP `sandbox` directive, so opening it top-level sandboxes it too),
 *   never with allow-same-origin: an opaque origin that cannot read the shell's DOM, and whose requests carry no
 *   cookies of the page. It reaches its own plugin's API only through the shell's bridge (shell-ui/bridge.js);
 * - an opaque origin loads module scripts in CORS mode, so the shell's own assets, the SDK's ui module and a sandboxed
 *   plugin's static files (under `/shell/ui/{name}/`, only for container plugins that declare a UI) are served with
 *   `Access-Control-Allow-Origin: *`: public code, without credentials.
 * The listener's Host allow-list applies to all of it (http/server.ts runs it before the router).
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type { MountedRoute, Router } from "../router.js";
import { sendFile, sendJsonError, serveStatic } from "../static.js";
import { ShellCatalog } from "./catalog.js";

export const SHELL_UI_DIR = fileURLToPath(new URL("../../../../shell-ui/", import.meta.url));

/** `@hecate/sdk/ui` as browsers load it: the compiled, dependency-free module of the SDK. */
const SDK_UI_FILE = createRequire(import.meta.url).resolve("@hecate/sdk/ui");

/** The one inline script of the shell and frame pages, allowed by its hash. */
export const IMPORT_MAP = JSON.stringify({ imports: { "@hecate/sdk/ui": "/shell/sdk/ui.js" } });
const IMPORT_MAP_HASH = `'sha256-${createHash("sha256").update(IMPORT_MAP).digest("base64")}'`;

const COMMON = [
  "default-src 'none'",
  `script-src 'self' ${IMPORT_MAP_HASH}`,
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "object-src 'none'",
];

export const SHELL_CSP = [...COMMON, "frame-src 'self'", "frame-ancestors 'none'"].join("; ");
export const FRAME_CSP = ["sandbox allow-scripts allow-forms", ...COMMON, "frame-ancestors 'self'"].join("; ");

const PAGE_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "same-origin",
  "cache-control": "no-cache",
};

/** Mounts the shell's routes (group "shell") on the router; returns the catalog (its streams end at close). */
export function mountShell(router: Router, home: string): ShellCatalog {
  const catalog = new ShellCatalog(router, home);
  const page = readFileSync(`${SHELL_UI_DIR}index.html`, "utf8").replace("<!--importmap-->", importMapTag());
  const cors = (res: ServerResponse) => res.setHeader("access-control-allow-origin", "*");
  const routes: MountedRoute[] = [
    ...catalog.routes(),
    {
      method: "GET",
      path: "/",
      handler: (_req, res) => html(res, page, { ...PAGE_HEADERS, "content-security-policy": SHELL_CSP }),
    },
    {
      method: "GET",
      path: "/shell/sdk/ui.js",
      handler: (req, res) => {
        cors(res);
        return sendFile(req, res, SDK_UI_FILE, dirname(SDK_UI_FILE), {});
      },
    },
    {
      method: "GET",
      path: "/shell/frame/:name",
      handler: (_req, res, params) => {
        const p = catalog.list().find((x) => x.name === params.name);
        if (!p?.ui?.sandboxed)
          return sendJsonError(res, 404, "not_found", `no sandboxed UI of plugin ${JSON.stringify(params.name)}`);
        html(res, framePage(p.name, p.version, p.ui.element, p.ui.url, p.apiBase), {
          ...PAGE_HEADERS,
          "content-security-policy": FRAME_CSP,
        });
      },
    },
    {
      method: "GET",
      path: "/shell/ui/:name/*",
      handler: (req, res, params) => {
        const dir = catalog.sandboxedStaticDir(params.name);
        if (!dir) return sendJsonError(res, 404, "not_found", "not found");
        cors(res);
        return serveStatic(req, res, dir, params["*"]);
      },
    },
    {
      method: "GET",
      path: "/shell/*",
      handler: (req, res, params) => {
        cors(res);
        res.setHeader("x-content-type-options", "nosniff");
        return serveStatic(req, res, SHELL_UI_DIR, params["*"]);
      },
    },
  ];
  router.setSystemRoutes("shell", routes);
  return catalog;
}

function importMapTag(): string {
  return `<script type="importmap">${IMPORT_MAP}</script>`;
}

function html(res: ServerResponse, body: string, headers: Record<string, string>): void {
  res.writeHead(200, {
    ...headers,
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

const escapeAttr = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);

/** The sandboxed document of a container plugin's UI: the element is created by shell-ui/frame.js. */
function framePage(name: string, version: string, element: string, moduleUrl: string, apiBase: string): string {
  const data = { name, version, element, module: moduleUrl, "api-base": apiBase };
  const attrs = Object.entries(data)
    .map(([k, v]) => `data-${k}="${escapeAttr(v)}"`)
    .join(" ");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeAttr(name)}</title>
${importMapTag()}
<link rel="stylesheet" href="/shell/frame.css">
<script type="module" src="/shell/frame.js"></script>
</head>
<body ${attrs}></body>
</html>
`;
}
