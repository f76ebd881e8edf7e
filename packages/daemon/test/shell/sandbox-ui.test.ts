/**
 * A container plugin's UI in the app shell (real Podman container plugin, real daemon, headless Chromium): it is
 * mounted in a sandboxed iframe without allow-same-origin, so its code cannot read or write the shell's DOM, read the
 * page's cookies, or call another plugin's API with them (reads fail CORS, state changes meet the daemon's Origin
 * check, no request carries the cookie); it reaches its OWN plugin's API through the shell's bridge, which refuses
 * every path outside that plugin's API prefix (also `..` tricks and a second channel of its own). An upgrade loads
 * the frame again with the new version's UI.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { packPlugin } from "@hecate/package";
import type { Browser } from "playwright-core";
import { launchChromium } from "../admin/chromium.js";
import { echoExample, removeHomeContainers } from "../container/helpers.js";
import { startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { collectErrors, install, uiPlugin } from "./helpers.js";

/** The container plugin's UI module: it tries everything a hostile UI would, and shows what happened. */
const HOSTILE_UI = `import { HecateElement } from "@hecate/sdk/ui";
const attempt = async (fn) => { try { return await fn(); } catch (e) { return "blocked:" + e.name; } };
export default class extends HecateElement {
  async render() {
    if (this.done) return;
    this.done = true;
    const out = { origin: self.origin };
    out.parentDom = await attempt(() => parent.document.title);
    out.topWrite = await attempt(() => { top.document.body.append("pwned"); return "wrote"; });
    out.cookie = await attempt(() => document.cookie);
    out.readOther = await attempt(async () => "read:" + (await (await fetch("/plugin/victim/api/secret", { credentials: "include" })).text()));
    out.pokeOther = await attempt(async () => "sent:" + (await fetch("/plugin/victim/api/poke", { method: "POST", credentials: "include", mode: "no-cors" })).type);
    out.own = await attempt(async () => (await this.api("/hello")).hello);
    out.bridgeDotDot = await attempt(async () => "read:" + JSON.stringify(await this.api("/../../victim/api/secret")));
    out.bridgeEncoded = await attempt(async () => "read:" + JSON.stringify(await this.api("/%2e%2e/%2e%2e/victim/api/secret")));
    out.ownChannel = await new Promise((resolve) => {
      const c = new MessageChannel();
      c.port1.onmessage = ({ data }) => resolve(data.error ? "blocked:" + data.error : "read:" + data.body);
      parent.postMessage({ t: "hecate-bridge" }, "*", [c.port2]);
      c.port1.postMessage({ id: 1, method: "GET", path: "/../../victim/api/secret" });
    });
    const pre = document.createElement("pre");
    pre.id = "probe";
    pre.textContent = JSON.stringify(out);
    this.root.replaceChildren(pre);
  }
}
`;

/** A trusted plugin whose API records who called it, with which cookie and Origin. */
const VICTIM_ROUTES = `
  { method: "GET", path: "/secret", handler: (req) => { calls.push({ path: "secret", cookie: req.headers.cookie ?? "", origin: req.headers.origin ?? "" }); return { secret: "s3cret" }; } },
  { method: "POST", path: "/poke", handler: (req) => { calls.push({ path: "poke", cookie: req.headers.cookie ?? "", origin: req.headers.origin ?? "" }); return { poked: true }; } },
  { method: "GET", path: "/calls", handler: () => calls },
`;

let d: TestDaemon;
let browser: Browser;
before(async () => {
  [d, browser] = await Promise.all([startTestDaemon({ containers: true }), launchChromium()]);
});
after(async () => {
  await browser?.close();
  if (!d) return;
  // the daemon's close stops its containers; whatever is left of this home's instance is removed before stop()
  // deletes the home (and its instance id with it)
  await d.close().catch(() => {});
  await removeHomeContainers(d.home);
  await d.stop();
});

/** The UI of the upgrade: its version (the shell's attribute) and what its own API answers, through the bridge. */
const PLAIN_UI = `import { HecateElement } from "@hecate/sdk/ui";
export default class extends HecateElement {
  async render() {
    const p = document.createElement("p");
    p.id = "version";
    p.textContent = this.pluginVersion + " " + (await this.api("/hello")).hello;
    this.root.replaceChildren(p);
  }
}
`;

/** examples/container-echo with a UI: `ui.element` ce-app, the hostile module above (or `ui`). */
async function packContainerWithUi(version = "0.1.0", ui = HOSTILE_UI): Promise<Buffer> {
  const src = mkdtempSync(join(d.work, "ce-"));
  cpSync(echoExample, src, { recursive: true });
  const manifestFile = join(src, "manifest.json");
  const m = JSON.parse(readFileSync(manifestFile, "utf8"));
  writeFileSync(manifestFile, JSON.stringify({ ...m, version, ui: { element: "ce-app", module: "ui.js" } }));
  writeFileSync(join(src, "priv/static/ui.js"), ui);
  const out = join(d.work, `ce-${version}.tar.gz`);
  await packPlugin(src, out);
  return readFileSync(out);
}

test("a container plugin's UI: sandboxed frame, no access to the shell's DOM, cookies, or another plugin's API", async () => {
  await install(d, uiPlugin("victim", "1.0.0", undefined, { extra: "const calls = [];", routes: VICTIM_ROUTES }));
  const r = await d.api("POST", "/admin/api/plugins?wait=loaded", {
    body: await packContainerWithUi(),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());

  const listed = (await (await fetch(`${d.url}/api/shell/plugins`)).json()) as { plugins: { name: string }[] };
  const ce = listed.plugins.find((p) => p.name === "container-echo") as unknown as { ui: Record<string, unknown> };
  assert.deepEqual(ce.ui, {
    element: "ce-app",
    module: "ui.js",
    url: "/shell/ui/container-echo/ui.js",
    sandboxed: true,
  });

  const context = await browser.newContext();
  await context.addCookies([{ name: "session", value: "page-cookie", url: d.url }]);
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(`${d.url}/#/plugin/container-echo`);
  const frame = page.locator('#mount iframe[sandbox="allow-scripts allow-forms"]');
  await frame.waitFor();
  const probe = page.frameLocator("#mount iframe").locator("#probe");
  await probe.waitFor({ timeout: 20_000 });
  const out = JSON.parse((await probe.textContent()) ?? "{}");
  assert.deepEqual(out, {
    origin: "null",
    parentDom: "blocked:SecurityError",
    topWrite: "blocked:SecurityError",
    cookie: "blocked:SecurityError",
    readOther: "blocked:TypeError",
    pokeOther: "sent:opaque",
    own: "from a container",
    bridgeDotDot: "blocked:TypeError",
    bridgeEncoded: "blocked:TypeError",
    ownChannel: "blocked:not under /plugin/container-echo/api",
  });
  assert.equal(await page.title(), "hecate");
  assert.equal(await page.locator("body", { hasText: "pwned" }).count(), 0);

  // The victim's side: the frame's read may have gone out but without the cookie, and its POST never ran.
  const calls = (await (await fetch(`${d.url}/plugin/victim/api/calls`)).json()) as { path: string; cookie: string }[];
  assert.ok(
    calls.every((c) => !c.cookie.includes("page-cookie")),
    JSON.stringify(calls),
  );
  assert.equal(calls.filter((c) => c.path === "poke").length, 0, JSON.stringify(calls));
  // ...while the shell page itself (same origin) does send it: the cookie was there to steal.
  const own = await page.evaluate(`fetch("/plugin/victim/api/secret").then((r) => r.json())`);
  assert.deepEqual(own, { secret: "s3cret" });
  const after = (await (await fetch(`${d.url}/plugin/victim/api/calls`)).json()) as { cookie: string }[];
  assert.equal(after.at(-1)?.cookie, "session=page-cookie");

  // The frame document is sandboxed by its own CSP too (opened top-level, it stays an opaque origin).
  const doc = await fetch(`${d.url}/shell/frame/container-echo`);
  assert.match(doc.headers.get("content-security-policy") ?? "", /^sandbox allow-scripts allow-forms;/);
  assert.equal((await fetch(`${d.url}/shell/frame/victim`)).status, 404); // trusted plugins are not framed
  assert.equal((await fetch(`${d.url}/shell/ui/victim/ui.js`)).status, 404); // nor served with CORS

  // Upgrade: the frame is loaded again with the new version's module, in the open page.
  let loads = 0;
  page.on("load", () => loads++);
  const up = await d.api("POST", "/admin/api/plugins/container-echo/upgrade", {
    body: await packContainerWithUi("0.2.0", PLAIN_UI),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(up.status, 200, await up.text());
  const version = page.frameLocator("#mount iframe").locator("#version");
  await version.waitFor({ timeout: 20_000 });
  assert.equal(await version.textContent(), "0.2.0 from a container");
  assert.equal(await page.locator("#mount iframe").getAttribute("title"), "container-echo 0.2.0");
  assert.equal(loads, 0, "the shell page itself did not reload");
  assert.deepEqual(
    errors.filter((e) => !/CORS|Failed to load resource|ERR_FAILED/.test(e)),
    [],
  );
  await context.close();
});
