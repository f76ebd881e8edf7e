/**
 * Cross-site request forgery against the taskboard in real Chromium: a page on another origin (a second local HTTP
 * server, another port) fires every write a browser allows it without asking — `no-cors` fetches with a Blob, a
 * typed Blob, a text body, a bodyless POST, a multipart upload, and plain HTML form posts (text/plain and multipart)
 * — and nothing changes (checked through the API). The same page may call a route of another plugin whose CORS policy
 * names its origin, and still not one without a policy.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type Daemon, startDaemon } from "@hecate/daemon";
import { packPlugin } from "@hecate/package";
import { type Browser, chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const exampleRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

let work: string;
let d: Daemon;
let attacker: Server;
let attackerOrigin: string;
let browser: Browser;
let taskId: string;
/** The attacker's pages by path, filled in once the daemon's URL is known. */
const pages = new Map<string, string>();

// biome-ignore lint/suspicious/noExplicitAny: test assertions inspect arbitrary JSON
async function getJson(url: string): Promise<any> {
  const r = await fetch(url);
  assert.equal(r.status, 200, url);
  return r.json();
}

async function install(archive: string): Promise<void> {
  const r = await fetch(`${d.adminUrl}/admin/api/plugins`, {
    method: "POST",
    headers: { authorization: `Bearer ${d.token}`, "content-type": "application/gzip" },
    body: readFileSync(archive),
  });
  assert.equal(r.status, 201, await r.text());
}

/** A plugin with one route open to the attacker's origin (CORS policy) and one without a policy. */
function corsDemo(origin: string): string {
  return `
const notes = [];
const closed = [];
export function manifest() { return { name: "corsdemo", version: "1.0.0" }; }
export function init() {}
export function routes() {
  return [
    { method: "POST", path: "/notes", cors: { origins: [${JSON.stringify(origin)}] },
      handler: async (req) => { notes.push((await req.json()).text); return { status: 201, body: { notes } }; } },
    { method: "POST", path: "/closed", handler: async (req) => { closed.push(await req.text()); return { closed }; } },
    { method: "GET", path: "/state", handler: () => ({ notes, closed }) },
  ];
}`;
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or CHROMIUM_PATH)`);
  work = mkdtempSync(join(tmpdir(), "hecate-taskboard-csrf-"));
  attacker = createServer((req, res) => {
    const page = pages.get(req.url ?? "");
    res.writeHead(page ? 200 : 404, { "content-type": "text/html; charset=utf-8" });
    res.end(page ?? "");
  });
  await new Promise<void>((r) => attacker.listen(0, "127.0.0.1", r));
  attackerOrigin = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}`;

  d = await startDaemon({ home: join(work, "home"), port: 0, logLevel: "silent", containers: false });
  const taskboard = join(work, "taskboard.tar.gz");
  execFileSync(process.execPath, [join(exampleRoot, "scripts", "pack.mjs"), taskboard], { stdio: "pipe" });
  await install(taskboard);
  const stage = join(work, "corsdemo");
  mkdirSync(join(stage, "dist"), { recursive: true });
  writeFileSync(join(stage, "manifest.json"), JSON.stringify({ name: "corsdemo", version: "1.0.0" }));
  writeFileSync(join(stage, "dist", "index.js"), corsDemo(attackerOrigin));
  await packPlugin(stage, join(work, "corsdemo.tar.gz"));
  await install(join(work, "corsdemo.tar.gz"));

  const created = await fetch(`${d.url}/plugin/taskboard/api/boards/main/tasks`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ title: "do not touch" }),
  });
  assert.equal(created.status, 201);
  taskId = ((await created.json()) as { id: string }).id;
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  attacker?.closeAllConnections();
  await new Promise<void>((r) => (attacker ? attacker.close(() => r()) : r()));
  await d?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** Opens an attacker page and waits until its script reports (document.title) what it did. */
async function runAttack(path: string, html: string): Promise<string> {
  pages.set(path, html);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(attackerOrigin + path);
    await page.waitForFunction('document.title.startsWith("done")', undefined, { timeout: 20_000 });
    return await page.title();
  } finally {
    await context.close();
  }
}

test("a page on another origin cannot create, complete or attach anything on the taskboard", async () => {
  const api = `${d.url}/plugin/taskboard/api`;
  const title = await runAttack(
    "/fetch",
    `<!doctype html><title>loading</title><script>
(async () => {
  const api = ${JSON.stringify(api)}, task = ${JSON.stringify(taskId)};
  const send = (path, body) =>
    fetch(api + path, { method: "POST", mode: "no-cors", body }).then(() => "sent", () => "blocked");
  const board = (id) => JSON.stringify({ id, name: "forged " + id });
  const form = new FormData();
  form.append("file", new Blob(["evil"]), "evil.txt");
  const results = [
    await send("/boards", new Blob([board("csrf-blob")])),
    await send("/boards", new Blob([board("csrf-typed")], { type: "application/json" })),
    await send("/boards", board("csrf-text")),
    await send("/tasks/" + task + "/complete"),
    await send("/tasks/" + task + "/attachments", form),
  ];
  document.title = "done " + results.join(",");
})();
</script>`,
  );
  // The browser sent every one of them (no-cors: no preflight, the replies are opaque).
  assert.equal(title, "done sent,sent,sent,sent,sent");

  const formTitle = await runAttack(
    "/form",
    `<!doctype html><title>loading</title>
<iframe name="a"></iframe><iframe name="b"></iframe>
<form id="text" method="POST" target="a" enctype="text/plain" action="${api}/boards">
  <input name='{"id":"csrf-form","name":"forged","pad":"' value='"}'>
</form>
<form id="multi" method="POST" target="b" enctype="multipart/form-data" action="${api}/tasks/${taskId}/attachments">
  <input type="file" name="file">
</form>
<script>
  const files = new DataTransfer();
  files.items.add(new File(["evil"], "evil.txt", { type: "text/plain" }));
  document.querySelector("#multi input").files = files.files;
  let loaded = 0;
  for (const f of document.querySelectorAll("iframe"))
    f.addEventListener("load", () => { if (++loaded === 2) document.title = "done"; });
  document.querySelector("#text").submit();
  document.querySelector("#multi").submit();
</script>`,
  );
  assert.equal(formTitle, "done");

  const boards = (await getJson(`${api}/boards`)).boards as { id: string }[];
  assert.deepEqual(
    boards.map((b) => b.id).filter((id) => id.startsWith("csrf-")),
    [],
    "a forged request created a board",
  );
  const task = await getJson(`${api}/tasks/${taskId}`);
  assert.equal(task.completedAt, null, "a forged request completed the task");
  assert.deepEqual(task.attachments, [], "a forged upload attached a file");
});

test("the same page may call a route whose CORS policy names its origin, and only that one", async () => {
  const api = `${d.url}/plugin/corsdemo/api`;
  const title = await runAttack(
    "/cors",
    `<!doctype html><title>loading</title><script>
(async () => {
 try {
  const api = ${JSON.stringify(api)};
  const json = (text) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ text }) });
  const open = await fetch(api + "/notes", json("from " + location.origin));
  const got = (await open.json()).notes.join("|");
  const closed = await fetch(api + "/closed", json("forged")).then((r) => "read " + r.status, () => "blocked");
  const blind = await fetch(api + "/closed", { method: "POST", mode: "no-cors", body: "forged" }).then(() => "sent");
  document.title = "done " + open.status + " " + got + " / closed: " + closed + " / no-cors: " + blind;
 } catch (e) { document.title = "done, failed: " + e; }
})();
</script>`,
  );
  assert.equal(title, `done 201 from ${attackerOrigin} / closed: blocked / no-cors: sent`);
  assert.deepEqual(await getJson(`${api}/state`), { notes: [`from ${attackerOrigin}`], closed: [] });
});
