/**
 * End to end inside the real daemon: the packed tarball (npm run pack) is installed through the admin API, then the
 * plugin is used over real HTTP and WebSocket exactly as the static page uses it.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Daemon, startDaemon } from "@hecate/daemon";
import { type Browser, chromium, type Page } from "playwright-core";
import WebSocket from "ws";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

const exampleRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
let work: string;
let archive: string;
let d: Daemon;

before(async () => {
  work = mkdtempSync(join(tmpdir(), "hecate-taskboard-e2e-"));
  archive = join(work, "taskboard.tar.gz");
  execFileSync(process.execPath, [join(exampleRoot, "scripts", "pack.mjs"), archive], { stdio: "pipe" });
  d = await startDaemon({ home: join(work, "home"), port: 0, logLevel: "silent", containers: false });
});

after(async () => {
  await d?.close();
  rmSync(work, { recursive: true, force: true });
});

interface PackModule {
  packTaskboard(out: string, opts?: { version?: string }): Promise<{ file: string }>;
}

function admin(method: string, path: string, body?: Buffer): Promise<Response> {
  const headers: Record<string, string> = { authorization: `Bearer ${d.token}` };
  if (body) headers["content-type"] = "application/gzip";
  return fetch(d.adminUrl + path, { method, headers, body });
}

const api = (path: string) => `${d.url}/plugin/taskboard/api${path}`;

async function post(path: string, body: unknown): Promise<Response> {
  return fetch(api(path), {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** A ws client that queues messages so none is missed between awaits. */
async function liveClient(boardId: string) {
  const url = `${api(`/boards/${boardId}/live`).replace(/^http/, "ws")}`;
  const socket = new WebSocket(url);
  const queue: Record<string, unknown>[] = [];
  const waiters: ((m: Record<string, unknown>) => void)[] = [];
  socket.on("message", (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown>;
    const w = waiters.shift();
    if (w) w(m);
    else queue.push(m);
  });
  await once(socket, "open");
  return {
    socket,
    next: () =>
      queue.length
        ? Promise.resolve(queue.shift()!)
        : new Promise<Record<string, unknown>>((resolve) => waiters.push(resolve)),
  };
}

test("the packed plugin installs through the admin API and serves its page, API, live updates and files", async () => {
  const t0 = performance.now();
  const installed = await admin("POST", "/admin/api/plugins", readFileSync(archive));
  const view = (await installed.json()) as { status: string; version: string; routes: { path: string }[] };
  assert.equal(installed.status, 201, JSON.stringify(view));
  const installMs = performance.now() - t0;
  assert.equal(view.status, "loaded");
  assert.equal(view.version, "0.1.0");
  assert.ok(view.routes.some((r) => r.path === "/boards/:board/tasks"));

  // The static page and its assets.
  const page = await fetch(`${d.url}/plugin/taskboard/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-type") ?? "", /^text\/html/);
  assert.match(await page.text(), /<script type="module" src="app.js">/);
  const js = await fetch(`${d.url}/plugin/taskboard/ui.js`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get("content-type") ?? "", /javascript/);
  assert.match(await js.text(), /new WebSocket/);
  assert.equal((await fetch(`${d.url}/plugin/taskboard/style.css`)).status, 200);

  // A WebSocket client on the board receives the broadcast of a POST.
  const live = await liveClient("main");
  assert.deepEqual(await live.next(), { type: "hello", boardId: "main" });
  const created = await post("/boards/main/tasks", { title: "Ship the example", description: "end to end" });
  assert.equal(created.status, 201);
  const task = (await created.json()) as { id: string; column: string };
  const pushed = await live.next();
  assert.equal(pushed.type, "task_created");
  assert.equal(pushed.taskId, task.id);
  assert.deepEqual(pushed.task, task);

  // The read model lists it.
  const list = (await (await fetch(api("/boards/main/tasks"))).json()) as { tasks: { id: string; title: string }[] };
  assert.deepEqual(
    list.tasks.map((t) => [t.id, t.title]),
    [[task.id, "Ship the example"]],
  );

  // Validation through the daemon: 400 with field errors.
  const bad = await post("/boards/main/tasks", { title: "" });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, "validation_failed");

  // Upload (multipart, streamed through the daemon into the plugin's data dir), then download with Range.
  const content = Buffer.alloc(300_000);
  for (let i = 0; i < content.length; i++) content[i] = (i * 7) % 251;
  const form = new FormData();
  form.append("file", new Blob([content], { type: "application/octet-stream" }), "data ü.bin");
  const up = await fetch(api(`/tasks/${task.id}/attachments`), { method: "POST", body: form });
  assert.equal(up.status, 201);
  const withFile = (await up.json()) as { attachments: { id: string; name: string; sha256: string }[] };
  const att = withFile.attachments[0];
  assert.equal(att.name, "data ü.bin");
  assert.equal(att.sha256, createHash("sha256").update(content).digest("hex"));
  assert.equal((await live.next()).type, "file_attached");
  const down = await fetch(api(`/tasks/${task.id}/attachments/${att.id}`));
  assert.equal(down.status, 200);
  assert.match(down.headers.get("content-disposition") ?? "", /^attachment;/);
  assert.ok(Buffer.from(await down.arrayBuffer()).equals(content));
  const part = await fetch(api(`/tasks/${task.id}/attachments/${att.id}`), { headers: { range: "bytes=1000-1999" } });
  assert.equal(part.status, 206);
  assert.ok(Buffer.from(await part.arrayBuffer()).equals(content.subarray(1000, 2000)));

  // Move + complete reach the live client too.
  assert.equal((await post(`/tasks/${task.id}/move`, { column: "done" })).status, 200);
  assert.equal((await live.next()).type, "task_moved");

  // Deactivate -> activate: a new worker reopens the same store and read model.
  const closed = once(live.socket, "close");
  assert.equal((await admin("POST", "/admin/api/plugins/taskboard/deactivate")).status, 200);
  const [code] = await closed;
  assert.equal(code, 1001, "connections are closed cleanly at unload");
  assert.equal((await fetch(api("/boards"))).status, 503); // deactivated: plugin_not_active
  assert.equal((await admin("POST", "/admin/api/plugins/taskboard/activate")).status, 200);
  const after = (await (await fetch(api(`/tasks/${task.id}`))).json()) as { column: string; attachments: unknown[] };
  assert.equal(after.column, "done");
  assert.equal(after.attachments.length, 1);
  console.log(`# taskboard install via admin API: ${installMs.toFixed(0)} ms`);
});

test("the static page in two real Chromium tabs: create, move, attach, complete, delete, each seen live by the other", async (t) => {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or set CHROMIUM_PATH)`,
  );
  let browser: Browser | undefined;
  t.after(() => browser?.close());
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  const errors: string[] = [];
  const open = async (url: string): Promise<Page> => {
    const page = await browser!.newPage();
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector("#live.on");
    return page;
  };
  const a = await open(`${d.url}/plugin/taskboard/`);

  // A new board from the page; the page switches to it (?board=...).
  await a.fill("#new-board input[name=name]", "Release");
  await a.click("#new-board button");
  // (a string: this workspace compiles without DOM types)
  await a.waitForFunction("new URLSearchParams(location.search).get('board') !== 'main'");
  const boardId = new URL(a.url()).searchParams.get("board")!;
  await a.waitForSelector("#live.on");
  const b = await open(`${d.url}/plugin/taskboard/?board=${boardId}`);

  // Created in A -> shown in B by the live update (B never reloads).
  await a.fill("#new-task input[name=title]", "Write release notes");
  await a.fill("#new-task input[name=description]", "for 0.1.0");
  await a.click("#new-task button");
  const inB = b.locator('.column[data-column="todo"] .task', { hasText: "Write release notes" });
  await inB.waitFor();
  const taskId = (await inB.getAttribute("data-id"))!;

  // Moved in B -> A shows it in "doing".
  await inB.locator("button.right").click();
  await a.locator(`.column[data-column="doing"] .task[data-id="${taskId}"]`).waitFor();

  // Attached in A (file input) -> B shows the download link, which serves the bytes.
  const file = join(work, "notes.txt");
  writeFileSync(file, "release notes draft\n");
  await a.locator(`.task[data-id="${taskId}"] input[type=file]`).setInputFiles(file);
  const link = b.locator(`.task[data-id="${taskId}"] .attachments a`, { hasText: "notes.txt" });
  await link.waitFor();
  const href = (await link.getAttribute("href"))!;
  const got = await fetch(new URL(href, d.url));
  assert.equal(await got.text(), "release notes draft\n");

  // Completed in A -> B strikes it through; deleted in B -> gone from A.
  await a.locator(`.task[data-id="${taskId}"] button.complete`).click();
  await b.locator(`.task.completed[data-id="${taskId}"]`).waitFor();
  await b.locator(`.task[data-id="${taskId}"] button.delete`).click();
  await a.locator(`.task[data-id="${taskId}"]`).waitFor({ state: "detached" });

  // The page reports bad input from the API's field errors.
  await a.fill("#new-task input[name=title]", " ");
  await a.click("#new-task button");
  await a.locator("#error:not([hidden])").waitFor();
  assert.match((await a.textContent("#error")) ?? "", /title/);
  assert.deepEqual(errors, []);
});

test("upgrade to 0.1.1 under traffic: no failed request, the board and its files carry over", async () => {
  const { packTaskboard } = (await import(pathToFileURL(join(exampleRoot, "scripts", "pack.mjs")).href)) as PackModule;
  const next = join(work, "taskboard-0.1.1.tar.gz");
  await packTaskboard(next, { version: "0.1.1" });
  const before = (await (await fetch(api("/boards/main/tasks"))).json()) as { tasks: { id: string }[] };
  assert.ok(before.tasks.length >= 1);

  // Readers and a writer keep going while the new version loads and takes over.
  let stop = false;
  const failures: string[] = [];
  let reads = 0;
  let writes = 0;
  const reader = async () => {
    while (!stop) {
      const r = await fetch(api("/boards/main/tasks"));
      await r.arrayBuffer();
      if (r.status !== 200) failures.push(`GET ${r.status}`);
      reads++;
    }
  };
  const writer = async () => {
    while (!stop) {
      const r = await post("/boards/main/tasks", { title: `during upgrade ${writes}` });
      await r.arrayBuffer();
      if (r.status !== 201) failures.push(`POST ${r.status}`);
      writes++;
      await new Promise((resolve) => setTimeout(resolve, 100)); // well under the rate limit
    }
  };
  const load = Promise.all([reader(), reader(), writer()]);
  const up = await admin("POST", "/admin/api/plugins/taskboard/upgrade", readFileSync(next));
  const view = (await up.json()) as { version: string; status: string };
  stop = true;
  await load;
  assert.equal(up.status, 200, JSON.stringify(view));
  assert.equal(view.version, "0.1.1");
  assert.equal(view.status, "loaded");
  assert.deepEqual(failures, []);
  assert.ok(reads > 0 && writes > 0);

  // Every task written before and during the upgrade is in the new version's read model, files included.
  const after = (await (await fetch(api("/boards/main/tasks"))).json()) as { tasks: { id: string; title: string }[] };
  const ids = new Set(after.tasks.map((t) => t.id));
  for (const t of before.tasks) assert.ok(ids.has(t.id), `task ${t.id} kept`);
  assert.equal(after.tasks.filter((t) => t.title.startsWith("during upgrade")).length, writes);
  const withFile = after.tasks.find((t) => (t as { attachments?: unknown[] }).attachments?.length) as
    | { id: string; attachments: { id: string }[] }
    | undefined;
  assert.ok(withFile, "the attachment uploaded before the upgrade is still listed");
  assert.equal((await fetch(api(`/tasks/${withFile.id}/attachments/${withFile.attachments[0].id}`))).status, 200);

  // Live updates work on the new version.
  const live = await liveClient("main");
  await live.next();
  const created = await post("/boards/main/tasks", { title: "after upgrade" });
  assert.equal(created.status, 201);
  assert.equal((await live.next()).type, "task_created");
  live.socket.close();
  console.log(`# upgrade under load: ${reads} reads, ${writes} writes, 0 failures`);
});
