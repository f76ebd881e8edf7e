/**
 * The taskboard example (examples/taskboard, packed by its own script) in the app shell next to a second plugin:
 * its element mounts, opens its board's WebSocket under the shell's CSP, and a task added from the shell shows up.
 * With HECATE_SHELL_SCREENSHOT=<file.png> the run also writes the screenshot shown in the README (docs/shell.png):
 *   npx tsc -b && HECATE_SHELL_SCREENSHOT=docs/shell.png node --test packages/daemon/dist/test/shell/taskboard-ui.test.js
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { test } from "node:test";
import { launchChromium } from "../admin/chromium.js";
import { repoRoot } from "../container/helpers.js";
import { startTestDaemon } from "../lifecycle/helpers.js";
import { collectErrors, install, uiPlugin } from "./helpers.js";

test("the taskboard's element in the shell: live board, a task added from the shell", async (t) => {
  const d = await startTestDaemon();
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    await d.stop();
  });
  const archive = join(d.work, "taskboard.tar.gz");
  execFileSync(process.execPath, [join(repoRoot, "examples/taskboard/scripts/pack.mjs"), archive], { stdio: "pipe" });
  const r = await d.api("POST", "/admin/api/plugins?wait=loaded", {
    body: readFileSync(archive),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());
  await install(d, uiPlugin("greeter", "1.2.0", undefined, { manifest: { icon: "👋" } }));

  const page = await browser.newPage({ viewport: { width: 1200, height: 640 } });
  const errors = collectErrors(page);
  await page.goto(`${d.url}/#/plugin/taskboard`);
  await page.locator('#view[data-plugin="taskboard"][data-state="mounted"] taskboard-app').waitFor();
  await page.locator("taskboard-app #live.on").waitFor(); // its WebSocket, allowed by connect-src 'self'
  for (const title of ["Write the release notes", "Record the demo"]) {
    await page.fill("taskboard-app #new-task input[name=title]", title);
    await page.click("taskboard-app #new-task button");
    await page.locator("taskboard-app .task", { hasText: title }).waitFor();
  }
  const board = await fetch(`${d.url}/plugin/taskboard/api/boards/main/tasks`);
  const [task] = ((await board.json()) as { tasks: { id: string; title: string }[] }).tasks;
  assert.equal(task.title, "Write the release notes"); // it went through the plugin's API
  await page.locator(`taskboard-app .task[data-id="${task.id}"] button.right`).click();
  await page.locator(`taskboard-app .column[data-column="doing"] .task[data-id="${task.id}"]`).waitFor();
  assert.deepEqual(await page.locator("#plugins a").evaluateAll((as) => as.map((a) => a.getAttribute("data-plugin"))), [
    "greeter",
    "taskboard",
  ]);
  assert.deepEqual(errors, []);
  const shot = process.env.HECATE_SHELL_SCREENSHOT;
  if (shot) await page.screenshot({ path: resolve(shot) });
});
