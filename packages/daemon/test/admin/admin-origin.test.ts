/**
 * With `adminPort` the admin API has its own origin: in a real browser (headless Chromium), a plugin's page served on
 * the plugin port cannot use a logged-in operator's admin cookie to read or drive the admin API.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let d: TestDaemon;
let browser: Browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or CHROMIUM_PATH)`);
  d = await startTestDaemon({ adminPort: 0 });
  assert.notEqual(d.adminUrl, d.url);
  // The hostile plugin's page tries the admin API on the admin origin, with credentials, and on its own origin.
  const evilPage = `<!doctype html><title>loading</title><script>
(async () => {
  const admin = ${JSON.stringify(d.adminUrl)};
  const tries = [];
  for (const [url, init] of [
    [admin + "/admin/api/plugins", { credentials: "include" }],
    [admin + "/admin/api/plugins/victim/deactivate", { method: "POST", credentials: "include", mode: "no-cors" }],
    ["/admin/api/plugins/victim/deactivate", { method: "POST" }],
  ]) {
    try { tries.push((await fetch(url, init)).status); } catch { tries.push("blocked"); }
  }
  document.title = tries.join(",");
})();
</script>`;
  for (const [name, files] of [
    ["victim", {}],
    ["evil", { "priv/static/index.html": evilPage }],
  ] as const) {
    const archive = await buildPackage(d.work, { name, version: "1.0.0", files });
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(archive),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.text());
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await d?.stop();
});

test("admin API only on the admin port; plugins only on the plugin port", async () => {
  assert.equal((await fetch(`${d.url}/admin/api/plugins`)).status, 404);
  assert.equal((await fetch(`${d.url}/plugin/victim/api/who`)).status, 200);
  assert.equal((await fetch(`${d.adminUrl}/plugin/victim/api/who`)).status, 404);
  assert.equal((await fetch(`${d.adminUrl}/health`)).status, 200);
});

test("a plugin page cannot use the operator's admin cookie against the admin origin", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const login = await page.goto(`${d.adminUrl}/admin/login?token=${d.token}`);
    assert.equal(login?.status(), 200);
    assert.ok((await context.cookies()).some((c) => c.name === "hecate_admin" && c.httpOnly));
    // The cookie works for the admin page itself.
    const list = await page.evaluate(async () => (await fetch("/admin/api/plugins")).status);
    assert.equal(list, 200);
    await page.goto(`${d.url}/plugin/evil/`);
    await page.waitForFunction('document.title !== "loading"');
    const title = await page.title();
    const [read, deactivate, sameOrigin] = title.split(",");
    assert.ok(read === "blocked" || read === "403", `admin list readable from a plugin page: ${title}`);
    assert.ok(deactivate === "0" || deactivate === "blocked", title); // opaque (no-cors) or refused
    assert.equal(sameOrigin, "404", title);
    const victim = await (await d.api("GET", "/admin/api/plugins/victim")).json();
    assert.equal(victim.status, "loaded", `a plugin page drove the admin API (${title})`);
  } finally {
    await context.close();
  }
});
