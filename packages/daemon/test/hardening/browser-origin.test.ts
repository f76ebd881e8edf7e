/**
 * The admin cookie in a real browser (headless Chromium via playwright-core), default config (the admin API and page
 * on their own port): an attacker page on another origin cannot drive the admin API with a logged-in admin's cookie
 * (Origin guard), and neither can a plugin's own static page (served on the plugin port: another origin than the
 * admin's, and the admin API is not served on the plugin port at all).
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { listen } from "../../src/http/server.js";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let d: TestDaemon;
let browser: Browser;
let attacker: Server;
let attackerUrl: string;

// The page of a hostile plugin: tries the admin API with whatever credentials the browser attaches.
// It knows the admin origin (ADMIN is replaced once the daemon runs) and tries it with credentials, and its own origin.
const EVIL_PAGE = `<!doctype html><title>loading</title><script>
(async () => {
  const admin = ADMIN;
  const status = async (url, init) => { try { return (await fetch(url, init)).status; } catch { return "blocked"; } };
  const list = await status("/admin/api/plugins");
  const deact = await status("/admin/api/plugins/victim/deactivate", { method: "POST" });
  const adminList = await status(admin + "/admin/api/plugins", { credentials: "include" });
  const adminDeact = await status(admin + "/admin/api/plugins/victim/deactivate",
    { method: "POST", credentials: "include", mode: "no-cors" });
  document.title = "list:" + list + " deactivate:" + deact + " admin-list:" + adminList + " admin-deactivate:" + adminDeact;
})();
</script>`;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or CHROMIUM_PATH)`);
  d = await startTestDaemon(); // the default: a separate admin origin
  assert.notEqual(d.adminUrl, d.url, "the default config must give the admin its own origin");
  for (const [name, files] of [
    ["victim", {}],
    ["evil", { "priv/static/index.html": EVIL_PAGE.replace("ADMIN", JSON.stringify(d.adminUrl)) }],
  ] as const) {
    const archive = await buildPackage(d.work, { name, version: "1.0.0", files });
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(archive),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.text());
  }
  // Another origin on the same machine (same site for cookies: only the port differs).
  const target = `${d.adminUrl}/admin/api/plugins/victim/deactivate`;
  attacker = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end(`<!doctype html><title>loading</title><script>
      fetch(${JSON.stringify(target)}, { method: "POST", mode: "no-cors", credentials: "include" })
        .then(() => { document.title = "sent"; }, () => { document.title = "blocked"; });
    </script>`);
  });
  attackerUrl = `http://127.0.0.1:${await listen(attacker)}/`;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  attacker?.closeAllConnections();
  await new Promise<void>((r) => (attacker ? attacker.close(() => r()) : r()));
  await d?.stop();
});

async function victimStatus(): Promise<string> {
  return (await (await d.api("GET", "/admin/api/plugins/victim")).json()).status;
}

test("a page on another origin cannot use a logged-in admin's cookie against the admin API", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const login = await page.goto(`${d.adminUrl}/admin/login?token=${d.token}`);
    assert.equal(login?.status(), 200);
    assert.ok((await context.cookies()).some((c) => c.name === "hecate_admin" && c.httpOnly));
    await page.goto(attackerUrl);
    await page.waitForFunction('document.title !== "loading"');
    assert.equal(await victimStatus(), "loaded", "the cross-origin request deactivated the plugin");
  } finally {
    await context.close();
  }
});

test("a plugin's static page cannot use a logged-in admin's cookie against the admin API", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${d.adminUrl}/admin/login?token=${d.token}`);
    // logged in: the cookie works on the admin origin
    assert.equal(await page.evaluate(async () => (await fetch("/admin/api/plugins")).status), 200);
    await page.goto(`${d.url}/plugin/evil/`);
    await page.waitForFunction('document.title !== "loading"');
    const title = await page.title();
    assert.equal(await victimStatus(), "loaded", `a plugin page drove the admin API (${title})`);
    // its own origin has no admin API; the admin origin refuses it (Origin guard) or the browser blocks the read
    assert.match(title, /^list:404 deactivate:404 admin-list:(403|blocked) admin-deactivate:(0|blocked)$/, title);
  } finally {
    await context.close();
    if ((await victimStatus()) !== "loaded") await d.api("POST", "/admin/api/plugins/victim/activate");
  }
});
