/**
 * By default the admin API has its own origin (its own listener, next to the plugin port): in a real browser
 * (headless Chromium), a plugin's page served on the plugin port cannot use a logged-in operator's admin cookie to
 * read or drive the admin API. `adminPort: "shared"` (HECATE_ADMIN_PORT=shared) puts it back on the plugin port.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { resolveAdminPort } from "../../src/daemon.js";
import {
  buildPackage,
  spawnDaemon,
  startTestDaemon,
  type TestDaemon,
  unixRequest,
  until,
} from "../lifecycle/helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let d: TestDaemon;
let browser: Browser;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or CHROMIUM_PATH)`);
  // the default configuration (plus: this test process may call its own daemon's socket)
  d = await startTestDaemon({ trustOwnProcessOnSocket: true });
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

test("admin API, page and login only on the admin port; plugins only on the plugin port; health and ready on both", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  for (const path of ["/admin/api/plugins", "/admin/", "/admin/api/openapi.json", `/admin/login?token=${d.token}`])
    assert.equal((await fetch(`${d.url}${path}`, { headers: auth, redirect: "manual" })).status, 404, path);
  assert.equal((await fetch(`${d.adminUrl}/admin/api/plugins`, { headers: auth })).status, 200);
  assert.equal((await fetch(`${d.adminUrl}/admin/login?token=${d.token}`, { redirect: "manual" })).status, 303);
  assert.equal((await fetch(`${d.url}/plugin/victim/api/who`)).status, 200);
  assert.equal((await fetch(`${d.adminUrl}/plugin/victim/api/who`)).status, 404);
  for (const base of [d.url, d.adminUrl])
    for (const path of ["/health", "/ready"]) assert.equal((await fetch(`${base}${path}`)).status, 200, base + path);
  // the Unix socket keeps serving the admin API (no token)
  assert.equal((await unixRequest(d.socketPath, "GET", "/admin/api/plugins")).status, 200);
  // the admin page learns the plugin port to link plugin pages on their own origin
  const list = (await (await fetch(`${d.adminUrl}/admin/api/plugins`, { headers: auth })).json()) as {
    pluginPort: number | null;
  };
  assert.equal(list.pluginPort, Number(new URL(d.url).port));
});

test("the default admin port is the plugin port + 1 (7771 next to 7770), ephemeral beside an ephemeral one", async () => {
  assert.equal(resolveAdminPort(7770, undefined), 7771);
  assert.equal(resolveAdminPort(0, undefined), 0);
  assert.equal(resolveAdminPort(7770, 9000), 9000);
  assert.equal(resolveAdminPort(7770, 0), 0);
  assert.equal(resolveAdminPort(7770, "shared"), 7770);
  assert.throws(() => resolveAdminPort(65535, undefined), /set adminPort/);
  assert.throws(() => resolveAdminPort(7770, 7770), /use adminPort "shared"/);
  // a real daemon on a fixed port: its admin answers on port + 1
  const port = await freePortPair();
  const fixed = await startTestDaemon({ port });
  try {
    assert.equal(fixed.url, `http://127.0.0.1:${port}`);
    assert.equal(fixed.adminUrl, `http://127.0.0.1:${port + 1}`);
    assert.equal((await fixed.api("GET", "/admin/api/plugins")).status, 200);
  } finally {
    await fixed.stop();
  }
});

test('adminPort "shared": one port for plugins and admin (the less safe opt-in for a proxy)', async () => {
  const shared = await startTestDaemon({ adminPort: "shared" });
  try {
    assert.equal(shared.adminUrl, shared.url);
    const r = await fetch(`${shared.url}/admin/api/plugins`, { headers: { authorization: `Bearer ${shared.token}` } });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { pluginPort: number | null }).pluginPort, null);
    const archive = await buildPackage(shared.work, { name: "solo", version: "1.0.0" });
    const inst = await shared.api("POST", "/admin/api/plugins", {
      body: readFileSync(archive),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(inst.status, 201);
    assert.equal((await fetch(`${shared.url}/plugin/solo/api/who`)).status, 200);
  } finally {
    await shared.stop();
  }
});

test("main.js: both URLs printed; HECATE_ADMIN_PORT=shared shares; a bad HECATE_ADMIN_PORT exits 2", async () => {
  for (const [env, separate] of [
    [{}, true],
    [{ HECATE_ADMIN_PORT: "shared" }, false],
  ] as const) {
    const c = spawnDaemon(`${d.work}/main-home-${separate}`, env);
    try {
      const url = await c.url;
      const adminUrl = await until(() => /hecate admin on (\S+)/.exec(c.output())?.[1]);
      assert.equal(adminUrl !== url, separate, c.output());
      const status = (await fetch(`${url}/admin/api/plugins`, { headers: { authorization: "Bearer x" } })).status;
      assert.equal(status, separate ? 404 : 401);
      assert.equal((await fetch(`${adminUrl}/admin/api/plugins`)).status, 401);
    } finally {
      c.child.kill("SIGTERM");
      assert.equal((await c.exited).code, 0);
    }
  }
  const bad = spawnDaemon(`${d.work}/main-home-bad`, { HECATE_ADMIN_PORT: "seven" });
  assert.equal((await bad.exited).code, 2);
  assert.match(bad.output(), /HECATE_ADMIN_PORT must be a port number \(0-65535\) or "shared"/);
});

/** A port N with N and N + 1 both free right now (the default admin port is N + 1). */
async function freePortPair(): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(null));
      s.listen(port, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
  for (let i = 0; i < 20; i++) {
    const n = await tryListen(0);
    if (n !== null && n < 65535 && (await tryListen(n + 1)) !== null) return n;
  }
  throw new Error("no free port pair");
}

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
