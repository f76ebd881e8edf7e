/**
 * Host allow-list on the plugin listener against DNS rebinding (issue 10 point 6), in headless Chromium with the
 * real taskboard example: Chromium resolves `rebind.test` and `allowed.test` to 127.0.0.1 (--host-resolver-rules).
 * The attacker's first answer (the page, before its DNS name is rebound to 127.0.0.1) is given by page.route; every
 * request the page makes afterwards reaches the daemon for real, with `Host: rebind.test:PORT`: same-origin for the
 * browser, so only the daemon's Host check stands between the page and the board data. The same page under a name
 * the operator allowed (`allowedHosts`) reads it.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser } from "playwright-core";
import { HostAllowList, parseHostList } from "../../src/http/host-allow.js";
import { launchChromium } from "../admin/chromium.js";
import { spawnDaemon, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";

const PACK = fileURLToPath(new URL("../../../../../examples/taskboard/scripts/pack.mjs", import.meta.url));

let d: TestDaemon;
let browser: Browser;
let boardId: string;

// The attacker's page: reads the board list and opens the live WebSocket on its own (rebound) origin.
const PAGE = `<!doctype html><title>loading</title><script>
(async () => {
  let list;
  try {
    const r = await fetch("/plugin/taskboard/api/boards");
    list = r.status + ":" + (await r.text());
  } catch (e) { list = "error " + e; }
  const ws = await new Promise((resolve) => {
    const s = new WebSocket("ws://" + location.host + "/plugin/taskboard/api/boards/BOARD/live");
    s.onopen = () => { s.close(); resolve("open"); };
    s.onerror = () => resolve("refused");
  });
  window.result = { list, ws };
  document.title = "done";
})();
</script>`;

before(async () => {
  d = await startTestDaemon({ allowedHosts: ["allowed.test"] });
  const archive = join(d.work, "taskboard.tar.gz");
  execFileSync(process.execPath, [PACK, archive], { stdio: "pipe" });
  const r = await d.api("POST", "/admin/api/plugins", {
    body: readFileSync(archive),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());
  const board = await fetch(`${d.url}/plugin/taskboard/api/boards`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "secret plans" }),
  });
  const text = await board.text();
  assert.equal(board.status, 201, text);
  boardId = (JSON.parse(text) as { id: string }).id;
  browser = await launchChromium([
    "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP allowed.test 127.0.0.1",
    // Chromium's own guard (Local/Private Network Access: a page from a public address may not call loopback) is
    // switched off: other browsers have none, and this test is about the daemon's guard alone.
    "--disable-features=LocalNetworkAccessChecks,BlockInsecurePrivateNetworkRequests,PrivateNetworkAccessSendPreflights",
  ]);
});

after(async () => {
  await browser?.close();
  await d?.stop();
});

async function visit(name: string): Promise<{ list: string; ws: string }> {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const origin = `http://${name}:${d.port}`;
    // only the document itself is the attacker's; the page's own requests go to the network (the daemon)
    await page.route(`${origin}/`, (route) =>
      route.fulfill({ status: 200, contentType: "text/html", body: PAGE.replace("BOARD", boardId) }),
    );
    await page.goto(`${origin}/`);
    await page.waitForFunction('document.title === "done"', undefined, { timeout: 20_000 });
    return (await page.evaluate("window.result")) as { list: string; ws: string };
  } finally {
    await context.close();
  }
}

test("a DNS-rebinding page (rebind.test -> 127.0.0.1) cannot read taskboard data or open its WebSocket", async () => {
  const r = await visit("rebind.test");
  assert.match(r.list, /^403:/, r.list);
  assert.ok(!r.list.includes("secret plans"), r.list);
  assert.equal(JSON.parse(r.list.slice(4)).error.code, "forbidden_host");
  assert.equal(r.ws, "refused");
});

test("the same page under an allowed name (allowedHosts) or a loopback name reads the board and opens the socket", async () => {
  for (const name of ["allowed.test", "localhost"]) {
    const r = await visit(name);
    assert.match(r.list, /^200:/, `${name}: ${r.list}`);
    assert.ok(r.list.includes("secret plans"), r.list);
    assert.equal(r.ws, "open", name);
  }
});

/** Status of a request to `port` with a chosen Host header. */
function statusWithHost(port: number, host: string | undefined, path = "/health"): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, setHost: false, headers: host ? { host } : {} }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", reject);
    req.end();
  });
}

test("HECATE_ALLOWED_HOSTS (main.js): listed names pass, others get 403, loopback and the bind address always pass", async () => {
  const c = spawnDaemon(join(d.work, "env-home"), {
    HECATE_HOST: "127.0.0.1",
    HECATE_ALLOWED_HOSTS: " hecate.example , pinned.example:8080 ",
  });
  try {
    const port = Number(new URL(await c.url).port);
    const cases: [string | undefined, number][] = [
      ["hecate.example", 200],
      [`HECATE.example:${port}`, 200],
      ["pinned.example:8080", 200],
      ["pinned.example:9090", 403],
      [`127.0.0.1:${port}`, 200],
      [`[::1]:${port}`, 200],
      ["localhost", 200],
      ["evil.example", 403],
      ["127.0.0.1.evil.example", 403],
      [undefined, 400], // Node itself refuses HTTP/1.1 without Host
    ];
    for (const [host, status] of cases) assert.equal(await statusWithHost(port, host), status, String(host));
  } finally {
    c.child.kill("SIGTERM");
    await c.exited;
  }
  const bad = spawnDaemon(join(d.work, "env-bad"), { HECATE_ALLOWED_HOSTS: "a b" });
  assert.notEqual((await bad.exited).code, 0);
  assert.match(bad.output(), /invalid allowed host "a b"/);
});

test("HostAllowList: entries with and without port, IPv6, case", () => {
  const l = new HostAllowList(parseHostList("Box.Example,[fd00::1]:7770,10.0.0.5"));
  assert.ok(l.allows("box.example:1"));
  assert.ok(l.allows("[fd00::1]:7770"));
  assert.ok(!l.allows("[fd00::1]:7771"));
  assert.ok(l.allows("10.0.0.5:7770"));
  assert.ok(!l.allows("10.0.0.6"));
  assert.ok(!l.allows("box.example:1:2"));
  assert.ok(!l.allows(""));
  assert.throws(() => new HostAllowList(["http://x"]), /invalid allowed host/);
});
