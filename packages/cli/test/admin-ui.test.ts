/**
 * The admin page in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core) against a real
 * daemon: login by token, drag-and-drop install of a .tar.gz, the row goes to "loaded" live (SSE), Details shows the
 * event history, the Deactivate button unloads it.
 */
import assert from "node:assert/strict";
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { type Browser, chromium } from "playwright-core";
import { create as tarCreate, extract as tarExtract } from "tar";
import { cliJson, FIXTURES, get, startTestDaemon, tempDir } from "./helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

test("admin page: drag-and-drop install goes live to loaded, details, deactivate and remove buttons, a tampered package shows its error", async (t) => {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium not found at ${CHROMIUM}: install it with \`bash scripts/setup-system.sh\` (Debian package chromium) or set CHROMIUM_PATH`,
  );
  const daemon = await startTestDaemon();
  const work = tempDir("ui");
  let browser: Browser | undefined;
  t.after(async () => {
    await browser?.close();
    await daemon.stop();
    await rm(work, { recursive: true, force: true });
  });
  const archive = join(work, "echo-fixture.tar.gz");
  await cliJson(["plugin", "pack", join(FIXTURES, "echo-plugin"), "-o", archive]);

  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });

  // without the cookie the page is refused
  const anonymous = await browser.newPage();
  const refused = await anonymous.goto(`${daemon.adminUrl}/admin/`);
  assert.equal(refused?.status(), 401);
  await anonymous.close();

  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${daemon.adminUrl}/admin/login?token=${encodeURIComponent(daemon.token)}`);
  assert.equal(new URL(page.url()).pathname, "/admin/");
  await page.waitForSelector('#connection[data-state="open"]');
  assert.equal(await page.locator("#plugins tbody tr").count(), 0);

  // every status the row shows, in order (proves the row is updated live, not by a reload)
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { seenStatuses: string[] }).seenStatuses = seen;
    new MutationObserver(() => {
      const cell = document.querySelector('tr[data-plugin="echo-fixture"] [data-field="status"]');
      const s = cell?.textContent ?? "";
      if (s && seen[seen.length - 1] !== s) seen.push(s);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });

  // drag-and-drop of the package onto the drop zone
  const bytes = readFileSync(archive).toString("base64");
  await page.evaluate((b64) => {
    const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const dt = new DataTransfer();
    dt.items.add(new File([data], "echo-fixture.tar.gz", { type: "application/gzip" }));
    const zone = document.querySelector("#dropzone") as HTMLElement;
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, bytes);

  await page.waitForSelector('tr[data-plugin="echo-fixture"] [data-field="status"][data-status="loaded"]');
  const seen = await page.evaluate(() => (window as unknown as { seenStatuses: string[] }).seenStatuses);
  assert.equal(seen[seen.length - 1], "loaded");
  assert.equal(
    await page.getAttribute('tr[data-plugin="echo-fixture"] a[data-field="link"]', "href"),
    `${daemon.url}/plugin/echo-fixture/`, // on the plugin origin, not the admin's
  );
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 200);
  await page.waitForSelector("#upload-status:has-text('echo-fixture 1.0.0 is loaded')");

  // details: the event history of the plugin
  await page.click('tr[data-plugin="echo-fixture"] button[data-action="details"]');
  await page.waitForSelector('#history tr[data-event="plugin_installed_v1"]');
  assert.ok(await page.locator('#history tr[data-event="plugin_activated_v1"]').count());

  // the Deactivate button unloads it; the row follows
  await page.click('tr[data-plugin="echo-fixture"] button[data-action="deactivate"]');
  await page.waitForSelector('tr[data-plugin="echo-fixture"] [data-field="status"][data-status="deactivated"]');
  assert.equal((await get(`${daemon.url}/plugin/echo-fixture/api/hello`)).status, 503); // plugin_not_active
  assert.ok(await page.locator('tr[data-plugin="echo-fixture"] button[data-action="activate"]').count());

  // Remove (after the confirmation dialog): the row goes away
  page.once("dialog", (d) => void d.accept());
  await page.click('tr[data-plugin="echo-fixture"] button[data-action="remove"]');
  await page.waitForSelector('tr[data-plugin="echo-fixture"]', { state: "detached" });

  // a package tampered after packing: the row shows "failed" and the reason in its last-error cell, live
  const tampered = join(work, "tampered.tar.gz");
  const unpacked = join(work, "unpacked");
  await mkdir(unpacked);
  await tarExtract({ file: archive, cwd: unpacked });
  appendFileSync(join(unpacked, "src", "index.js"), "\n// tampered\n");
  await tarCreate({ gzip: true, file: tampered, cwd: unpacked, portable: true }, ["."]);
  await page.setInputFiles("#file-input", tampered);
  await page.waitForSelector('tr[data-plugin="echo-fixture"] [data-field="status"][data-status="failed"]');
  const lastError = await page.textContent('tr[data-plugin="echo-fixture"] [data-field="last-error"]');
  assert.match(lastError ?? "", /digest_mismatch: src\/index\.js does not match its SHA-256 digest/);
  await page.waitForSelector("#upload-status.error");
  assert.deepEqual(pageErrors, []);
});
