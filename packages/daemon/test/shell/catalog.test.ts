/**
 * The shell's public endpoint without a browser: a router + HTTP server + mountShell on a temp home. The SSE stream
 * pushes the whole list on every change (coalesced), lists inactive plugins by name only, drops a UI entry that a
 * manifest() answer got wrong (not schema-checked), and the shell's pages carry their CSP.
 */
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";
import { FRAME_CSP, mountShell, SHELL_CSP } from "../../src/http/shell/routes.js";

const home = mkdtempSync(join(tmpdir(), "hecate-shell-"));
const staticDir = join(home, "static");
const router = new Router();
const catalog = mountShell(router, home);
const server = createHttpServer(router);
let base = "";
before(async () => {
  mkdirSync(staticDir);
  writeFileSync(join(staticDir, "ui.js"), "export default class extends HTMLElement {}");
  base = `http://127.0.0.1:${await listen(server)}`;
});
after(async () => {
  catalog.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(home, { recursive: true, force: true });
});

const mount = (name: string, version: string, ui: unknown, extra: Record<string, unknown> = {}) =>
  router.setPlugin(name, { staticDir, manifest: { name, version, ui, ...extra }, routes: [] });

/** Reads `event: plugins` messages of the SSE stream. */
async function* events(signal: AbortSignal): AsyncGenerator<{ name: string; version: string; status: string }[]> {
  const res = await fetch(`${base}/api/shell/events`, { signal });
  assert.equal(res.headers.get("content-type"), "text/event-stream; charset=utf-8");
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let end = buf.indexOf("\n\n");
    while (end >= 0) {
      const msg = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = /^data: (.*)$/m.exec(msg);
      if (/^event: plugins$/m.test(msg) && data) yield JSON.parse(data[1]).plugins;
      end = buf.indexOf("\n\n");
    }
  }
}

test("the stream: the list at once, then one push per change (a swap's unmount+mount coalesced)", async () => {
  const ac = new AbortController();
  const it = events(ac.signal);
  assert.deepEqual((await it.next()).value, []);
  mount("alpha", "1.0.0", { element: "alpha-app", module: "ui.js" });
  assert.deepEqual(
    ((await it.next()).value || []).map((p: { name: string; version: string; status: string }) => [
      p.name,
      p.version,
      p.status,
    ]),
    [["alpha", "1.0.0", "loaded"]],
  );
  // many changes within the coalescing window -> one push with the end state
  mount("alpha", "1.0.1", { element: "alpha-app", module: "ui.js" });
  router.removePlugin("alpha");
  mount("alpha", "1.0.2", { element: "alpha-app", module: "ui.js" });
  router.setInactive({ beta: "plugin beta is not active (it is deactivated)" });
  assert.deepEqual((await it.next()).value, [
    {
      name: "alpha",
      version: "1.0.2",
      status: "loaded",
      apiBase: "/plugin/alpha/api",
      ui: { element: "alpha-app", module: "ui.js", url: "/plugin/alpha/ui.js", sandboxed: false },
    },
    { name: "beta", version: "", status: "inactive", apiBase: "/plugin/beta/api" },
  ]);
  router.removePlugin("alpha");
  router.setInactive({});
  assert.deepEqual((await it.next()).value, []);
  ac.abort();
});

test("a bad ui from manifest() is dropped; container plugins are sandboxed and served with CORS", async () => {
  for (const [name, ui] of [
    ["bad1", { element: "nohyphen", module: "ui.js" }],
    ["bad2", { element: "font-face", module: "ui.js" }],
    ["bad3", { element: "ok-app", module: "../escape.js" }],
    ["bad4", { element: "ok-app", module: "ui.css" }],
    ["bad5", "ok-app"],
  ] as const)
    mount(name, "1.0.0", ui);
  mount("boxed", "2.0.0", { element: "boxed-app", module: "ui.js" }, { plugin_type: "container" });
  const { plugins } = (await (await fetch(`${base}/api/shell/plugins`)).json()) as {
    plugins: { name: string; ui?: { url: string; sandboxed: boolean } }[];
  };
  assert.deepEqual(
    plugins.map((p) => [p.name, p.ui?.url, p.ui?.sandboxed]),
    [
      ["bad1", undefined, undefined],
      ["bad2", undefined, undefined],
      ["bad3", undefined, undefined],
      ["bad4", undefined, undefined],
      ["bad5", undefined, undefined],
      ["boxed", "/shell/ui/boxed/ui.js", true],
    ],
  );
  const mod = await fetch(`${base}/shell/ui/boxed/ui.js`);
  assert.equal(mod.status, 200);
  assert.equal(mod.headers.get("access-control-allow-origin"), "*");
  assert.equal((await fetch(`${base}/shell/ui/bad1/ui.js`)).status, 404);
  const frame = await fetch(`${base}/shell/frame/boxed`);
  assert.equal(frame.headers.get("content-security-policy"), FRAME_CSP);
  assert.match(await frame.text(), /data-module="\/shell\/ui\/boxed\/ui.js"/);
  const page = await fetch(`${base}/`);
  assert.equal(page.headers.get("content-security-policy"), SHELL_CSP);
  assert.match(SHELL_CSP, /frame-ancestors 'none'/);
  assert.doesNotMatch(SHELL_CSP, /unsafe-inline|unsafe-eval/);
  for (const n of ["bad1", "bad2", "bad3", "bad4", "bad5", "boxed"]) router.removePlugin(n);
});
