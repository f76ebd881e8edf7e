/**
 * Admin page sessions and anti-framing (issue 10 point 7), in headless Chromium where a browser matters:
 * - every admin response carries `frame-ancestors 'none'` + `X-Frame-Options: DENY`; a plugin page that frames the
 *   admin page shows nothing;
 * - the login cookie is a random session id (HttpOnly, SameSite=Strict, Path=/admin), never the token; a plugin
 *   page's same-named cookie does not log the operator out; logout and `hecate admin logout-all` revoke; an expired
 *   session is refused.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { buildPackage, startTestDaemon, type TestDaemon, unixRequest } from "../lifecycle/helpers.js";
import { launchChromium } from "./chromium.js";

const CLI = fileURLToPath(new URL("../../../../cli/dist/src/main.js", import.meta.url));

let d: TestDaemon;
let browser: Browser;

before(async () => {
  d = await startTestDaemon();
  // A hostile plugin page: frames the admin page, and plants a same-named cookie for the host (cookies ignore ports).
  const framer = `<!doctype html><title>framer</title>
<iframe id="f" src="${d.adminUrl}/admin/" width="800" height="600"></iframe>
<script>document.cookie = "hecate_admin=planted-by-plugin; path=/admin/api";</script>`;
  const archive = await buildPackage(d.work, {
    name: "framer",
    version: "1.0.0",
    files: { "priv/static/index.html": framer },
  });
  const r = await d.api("POST", "/admin/api/plugins", {
    body: readFileSync(archive),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await d?.stop();
});

/** Status and headers of one request to the admin port (raw: any Host, cookie, method). */
function adminRaw(
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<{ status: number; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    const req = request(`${d.adminUrl}${path}`, { method, headers }, (res) => {
      resolve({ status: res.statusCode ?? 0, headers: res.headers });
      res.destroy(); // event streams never end
    });
    req.on("error", reject);
    req.end();
  });
}

function assertNoFraming(h: Record<string, unknown>, what: string): void {
  assert.equal(h["content-security-policy"], "frame-ancestors 'none'", what);
  assert.equal(h["x-frame-options"], "DENY", what);
}

async function login(): Promise<string> {
  const r = await adminRaw(`/admin/login?token=${d.token}`);
  assert.equal(r.status, 303);
  const cookie = String(r.headers["set-cookie"]);
  const id = /^hecate_admin=([^;]+)/.exec(cookie)?.[1];
  assert.ok(id, cookie);
  return id;
}

test("every admin response says frame-ancestors 'none' and X-Frame-Options: DENY", async () => {
  const auth = { authorization: `Bearer ${d.token}` };
  const cases: [string, Record<string, string>, string, number][] = [
    ["/admin/", auth, "GET", 200],
    ["/admin/", {}, "GET", 401],
    ["/admin/app.js", auth, "GET", 200],
    ["/admin/api/plugins", auth, "GET", 200],
    ["/admin/api/plugins/nope", auth, "GET", 404],
    ["/admin/api/events", auth, "GET", 200],
    ["/admin/api/openapi.json", auth, "GET", 200],
    [`/admin/login?token=${d.token}`, {}, "GET", 303],
    ["/admin/login?token=wrong", {}, "GET", 401],
    ["/admin/logout", {}, "POST", 200],
    ["/admin", {}, "GET", 301],
    ["/admin/api/plugins", { ...auth, host: "evil.example" }, "GET", 403],
    ["/nowhere", {}, "GET", 404],
    ["/health", {}, "GET", 200],
  ];
  for (const [path, headers, method, status] of cases) {
    const r = await adminRaw(path, headers, method);
    assert.equal(r.status, status, `${method} ${path}`);
    assertNoFraming(r.headers, `${method} ${path}`);
  }
  const sock = await unixRequest(d.socketPath, "GET", "/admin/api/plugins");
  assertNoFraming(sock.headers, "unix socket");
});

test("a plugin page that frames the admin page shows nothing, while the admin page itself works", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${d.adminUrl}/admin/login?token=${d.token}`);
    await page.waitForSelector('#plugins tr[data-plugin="framer"]');
    const blocked: string[] = [];
    page.on("console", (m) => {
      if (/frame-ancestors|X-Frame-Options|Refused to (display|frame)/i.test(m.text())) blocked.push(m.text());
    });
    await page.goto(`${d.url}/plugin/framer/`);
    await page.waitForLoadState("load");
    const frame = page.frames().find((f) => f !== page.mainFrame());
    assert.ok(frame, "the iframe exists");
    await page.waitForTimeout(300);
    assert.equal(await frame.$("#plugins"), null, "the admin page rendered inside the frame");
    assert.equal(await frame.$("header h1"), null);
    assert.ok(blocked.length > 0 || frame.url().startsWith("chrome-error:"), `frame at ${frame.url()}`);
    if (process.env.HECATE_TEST_SCREENSHOTS) await page.screenshot({ path: process.env.HECATE_TEST_SCREENSHOTS });
  } finally {
    await context.close();
  }
});

test("login sets a session cookie (not the token) that survives a plugin's same-named cookie; logout revokes it", async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${d.adminUrl}/admin/login?token=${d.token}`);
    await page.waitForSelector('#plugins tr[data-plugin="framer"]');
    const [cookie] = (await context.cookies()).filter((c) => c.name === "hecate_admin");
    assert.ok(cookie);
    assert.notEqual(cookie.value, d.token);
    assert.ok(!cookie.value.includes(d.token.slice(0, 16)));
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(cookie.path, "/admin");
    // a plugin page plants hecate_admin=planted-by-plugin (Path=/admin/api: sent first) for the same host
    await page.goto(`${d.url}/plugin/framer/`);
    await page.waitForLoadState("load");
    assert.equal((await context.cookies()).filter((c) => c.name === "hecate_admin").length, 2);
    await page.goto(`${d.adminUrl}/admin/`);
    await page.waitForSelector('#plugins tr[data-plugin="framer"]');
    assert.equal(await page.evaluate(async () => (await fetch("/admin/api/plugins")).status), 200);
    // log out with the button: the page says so and the session id is dead, also for other clients
    await page.click("#logout");
    await page.waitForSelector("#signed-out:not([hidden])");
    assert.match(String(await page.textContent("#signed-out")), /Logged out/);
    assert.equal((await adminRaw("/admin/api/plugins", { cookie: `hecate_admin=${cookie.value}` })).status, 401);
    assert.equal((await page.goto(`${d.adminUrl}/admin/`))?.status(), 401);
  } finally {
    await context.close();
  }
});

test("several hecate_admin cookies: any one live session is enough; none live -> 401", async () => {
  const id = await login();
  const ok = await adminRaw("/admin/api/plugins", { cookie: `hecate_admin=bogus; x=1; hecate_admin=${id}` });
  assert.equal(ok.status, 200);
  assert.equal(
    (await adminRaw("/admin/api/plugins", { cookie: "hecate_admin=bogus; hecate_admin=other" })).status,
    401,
  );
  assert.equal((await adminRaw("/admin/api/plugins", { cookie: `hecate_admin=${d.token}` })).status, 401, "token");
});

test("hecate admin logout-all (CLI over the socket) ends every session; the token keeps working", async () => {
  const a = await login();
  const b = await login();
  for (const id of [a, b])
    assert.equal((await adminRaw("/admin/api/plugins", { cookie: `hecate_admin=${id}` })).status, 200);
  const out = await new Promise<string>((resolve, reject) =>
    execFile(process.execPath, [CLI, "--home", d.home, "admin", "logout-all", "--json"], (err, stdout, stderr) =>
      err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  assert.ok(JSON.parse(out).revoked >= 2, out);
  for (const id of [a, b])
    assert.equal((await adminRaw("/admin/api/plugins", { cookie: `hecate_admin=${id}` })).status, 401);
  assert.equal((await adminRaw("/admin/api/plugins", { authorization: `Bearer ${d.token}` })).status, 200);
  // over TCP the same API needs the token
  assert.equal((await adminRaw("/admin/api/sessions", {}, "DELETE")).status, 401);
});

test("an expired session is refused (short TTL injected through the options)", async () => {
  // Long enough for a loaded CI box to read the cookie before it expires, short enough for a test.
  const short = await startTestDaemon({ adminSessionTtlMs: 4000 });
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(`${short.adminUrl}/admin/login?token=${short.token}`);
    await page.waitForSelector("#connection[data-state='open']");
    const [cookie] = (await context.cookies()).filter((c) => c.name === "hecate_admin");
    const set = await fetch(`${short.adminUrl}/admin/login?token=${short.token}`, { redirect: "manual" });
    assert.match(String(set.headers.get("set-cookie")), /Max-Age=4(;|$)/);
    await page.waitForTimeout(4300);
    const api = await fetch(`${short.adminUrl}/admin/api/plugins`, {
      headers: { cookie: `hecate_admin=${cookie.value}` },
    });
    assert.equal(api.status, 401);
    // and inside the browser (whose cookie has expired too)
    assert.equal(await page.evaluate('fetch("/admin/api/plugins").then((r) => r.status)'), 401);
  } finally {
    await context.close();
    await short.stop();
  }
});
