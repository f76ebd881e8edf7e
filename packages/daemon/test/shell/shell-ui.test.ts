/**
 * The app shell (`GET /` on the plugin port) in real headless Chromium against a real daemon: plugins installed,
 * upgraded and removed through the admin API appear, re-render and disappear in an open page without a reload; a
 * deep link opens a plugin; the navigation works from the keyboard; light/dark follows the system and the toggle;
 * the page's CSP holds (no violation logged) while the SDK's HecateElement runs through the import map.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { launchChromium } from "../admin/chromium.js";
import { startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { collectErrors, install, remove, uiPlugin, upgrade } from "./helpers.js";

let d: TestDaemon;
let browser: Browser;
before(async () => {
  [d, browser] = await Promise.all([startTestDaemon(), launchChromium()]);
});
after(async () => {
  await browser?.close();
  await d?.stop();
});

const navLink = (page: Page, name: string) => page.locator(`#plugins a[data-plugin="${name}"]`);
const focusedPlugin = (page: Page) => page.evaluate('document.activeElement?.getAttribute("data-plugin")');
const mounted = (page: Page, name: string, version: string) =>
  page.locator(`#view[data-plugin="${name}"][data-version="${version}"][data-state="mounted"]`);

test("install -> appears live, upgrade -> new version renders, remove -> gone; all without a reload", async () => {
  const page = await browser.newPage();
  const errors = collectErrors(page);
  let loads = 0;
  page.on("load", () => loads++);
  const res = await page.goto(`${d.url}/`);
  assert.match(res?.headers()["content-security-policy"] ?? "", /script-src 'self' 'sha256-/);
  await page.locator('#connection[data-state="open"]').waitFor();
  assert.equal(await page.locator("#no-plugins").isVisible(), true);

  await install(d, uiPlugin("alpha", "1.0.0"));
  await navLink(page, "alpha").waitFor();
  assert.equal(await navLink(page, "alpha").getAttribute("data-version"), "1.0.0");
  await navLink(page, "alpha").click();
  await mounted(page, "alpha", "1.0.0").waitFor();
  assert.equal(
    await page.locator("#mount .who").textContent(),
    "alpha 1.0.0 @ /plugin/alpha/api (1.0.0)", // from its own API, through HecateElement.api()
  );
  assert.equal(await page.locator("#mount > *").evaluate((el) => el.localName), "alpha-app");

  // Upgrade: the module is imported again and its class registered under a new tag (elements cannot be redefined).
  await upgrade(d, uiPlugin("alpha", "1.0.1"));
  await mounted(page, "alpha", "1.0.1").waitFor();
  await page.locator("#mount .who", { hasText: "alpha 1.0.1" }).waitFor();
  assert.equal(await page.locator("#mount > *").evaluate((el) => el.localName), "alpha-app--1");
  assert.equal(await navLink(page, "alpha").getAttribute("data-version"), "1.0.1");

  // Remove while it is shown: gone from the navigation, the view says so.
  await remove(d, "alpha");
  await navLink(page, "alpha").waitFor({ state: "detached" });
  await page.locator("#view-status", { hasText: "alpha is not loaded" }).waitFor();
  assert.equal(await page.locator("#mount > *").count(), 0);
  assert.equal(await page.locator("#no-plugins").isVisible(), true);

  assert.equal(loads, 1, "the page never reloaded");
  assert.deepEqual(errors, []);
  await page.close();
});

test("deep link, keyboard navigation, and the public endpoint lists no admin data", async () => {
  await install(d, uiPlugin("beta", "2.0.0"));
  await install(d, uiPlugin("gamma", "3.0.0"));
  await install(d, { name: "headless", version: "1.0.0" }); // no UI: listed by the endpoint, not in the navigation

  const listed = (await (await fetch(`${d.url}/api/shell/plugins`)).json()) as { plugins: Record<string, unknown>[] };
  assert.deepEqual(
    listed.plugins.map((p) => [p.name, p.version, p.status, Object.keys(p).sort().join(",")]),
    [
      ["beta", "2.0.0", "loaded", "apiBase,name,status,ui,version"],
      ["gamma", "3.0.0", "loaded", "apiBase,name,status,ui,version"],
      ["headless", "1.0.0", "loaded", "apiBase,name,status,version"],
    ],
  );
  assert.deepEqual(listed.plugins[0].ui, {
    element: "beta-app",
    module: "ui.js",
    url: "/plugin/beta/ui.js",
    sandboxed: false,
  });

  const page = await browser.newPage();
  const errors = collectErrors(page);
  await page.goto(`${d.url}/#/plugin/gamma`);
  await mounted(page, "gamma", "3.0.0").waitFor();
  assert.equal(await page.locator("#mount .who").textContent(), "gamma 3.0.0 @ /plugin/gamma/api (3.0.0)");
  assert.equal(await navLink(page, "gamma").getAttribute("aria-current"), "page");
  assert.equal(await page.locator("#plugins a").count(), 2);

  // One tab stop for the list (the current plugin); arrows move, wrap, Home/End; Enter opens and focuses the view.
  await page.locator("#theme").focus();
  await page.keyboard.press("Tab");
  assert.equal(await focusedPlugin(page), "gamma");
  await page.keyboard.press("ArrowDown"); // wraps to the first
  assert.equal(await focusedPlugin(page), "beta");
  await page.keyboard.press("End");
  assert.equal(await focusedPlugin(page), "gamma");
  await page.keyboard.press("ArrowUp");
  assert.equal(await focusedPlugin(page), "beta");
  await page.keyboard.press("Enter");
  await mounted(page, "beta", "2.0.0").waitFor();
  assert.equal(new URL(page.url()).hash, "#/plugin/beta");
  await page.waitForFunction('document.activeElement?.id === "view-title"');
  assert.equal(await page.locator("#mount .who").textContent(), "beta 2.0.0 @ /plugin/beta/api (2.0.0)");
  // Back to the home view and forward again with the browser's history (hash routes).
  await page.goBack();
  await mounted(page, "gamma", "3.0.0").waitFor();
  assert.deepEqual(errors, []);
  await page.close();
});

test("kill -9 of the plugin host: the open shell reconnects and mounts its plugin again, without a reload", async () => {
  const page = await browser.newPage();
  const errors = collectErrors(page);
  await page.goto(`${d.url}/#/plugin/beta`);
  await mounted(page, "beta", "2.0.0").waitFor();
  await page.locator('#connection[data-opens="1"]').waitFor();
  let loads = 0;
  page.on("load", () => loads++);
  const host = d.hosts.pids()[1];
  assert.ok(host, "the main plugin host runs");
  process.kill(host, "SIGKILL");
  await page.locator('#connection[data-opens="2"][data-state="open"]').waitFor({ timeout: 30_000 });
  await mounted(page, "beta", "2.0.0").waitFor({ timeout: 30_000 });
  await page.locator("#mount .who", { hasText: "beta 2.0.0" }).waitFor();
  await navLink(page, "gamma").waitFor();
  assert.notEqual(d.hosts.pids()[1], host, "a new host serves");
  assert.equal(loads, 0);
  // while the host was down the stream's reconnects may have failed (logged by Chromium as network errors)
  assert.deepEqual(
    errors.filter((e) => !/Failed to load resource|ERR_|EventSource/.test(e)),
    [],
  );
  await page.close();
});

test("light/dark: follows prefers-color-scheme, the toggle overrides it and is remembered", async () => {
  const context = await browser.newContext({ colorScheme: "dark" });
  const page = await context.newPage();
  const errors = collectErrors(page);
  await page.goto(`${d.url}/`);
  const bg = () => page.evaluate("getComputedStyle(document.body).backgroundColor");
  assert.equal(await bg(), "rgb(21, 20, 26)");
  assert.equal(await page.locator("#theme").getAttribute("aria-pressed"), "true");
  await page.locator("#theme").click();
  assert.equal(await bg(), "rgb(255, 255, 255)");
  assert.equal(await page.locator("#theme").getAttribute("aria-pressed"), "false");
  await page.reload();
  assert.equal(await bg(), "rgb(255, 255, 255)");
  await page.emulateMedia({ colorScheme: "light" });
  await page.locator("#theme").click();
  assert.equal(await bg(), "rgb(21, 20, 26)");
  assert.deepEqual(errors, []);
  await context.close();
});
