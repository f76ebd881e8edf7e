/**
 * Refused packages on the admin page (real headless Chromium via playwright-core, real daemon): a package refused
 * before its name is known shows up live (SSE `rejection`) in "Refused packages" with its code, and is still listed
 * after a page reload (GET /admin/api/rejections); a refused download shows its URL.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { startTestDaemon } from "../lifecycle/helpers.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

test("admin page: a refused upload appears live under Refused packages and stays after a reload", async (t) => {
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (bash scripts/setup-system.sh, or CHROMIUM_PATH)`);
  const d = await startTestDaemon();
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
  t.after(async () => {
    await browser.close();
    await d.stop();
  });
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${d.adminUrl}/admin/login?token=${encodeURIComponent(d.token)}`);
  await page.waitForSelector('#connection[data-state="open"]');
  assert.equal(await page.locator("#no-rejections").isVisible(), true);
  assert.equal(await page.locator("#rejections tbody tr").count(), 0);

  const bytes = Buffer.from("not a package at all\n");
  await page.setInputFiles("#file-input", { name: "broken.tar.gz", mimeType: "application/gzip", buffer: bytes });
  const row = page.locator("#rejections tbody tr");
  await row.first().waitFor();
  assert.equal(await row.count(), 1);
  assert.equal(await row.locator('[data-field="code"]').textContent(), "not_gzip");
  assert.match((await page.locator("#upload-status").textContent()) ?? "", /refused.*not_gzip/);
  assert.equal(await page.locator("#no-rejections").isVisible(), false);

  // Not only pushed: stored, so a fresh page lists it too.
  await page.reload();
  await page.waitForSelector('#connection[data-state="open"]');
  await page.locator("#rejections tbody tr").first().waitFor();
  assert.equal(await page.locator('#rejections tbody tr [data-field="code"]').textContent(), "not_gzip");

  // A refused download names its URL as the source (plain http:// to a non-loopback host: refused before any
  // connection).
  const url = "http://10.255.255.1/remote.tar.gz";
  const r = await d.api("POST", "/admin/api/plugins", {
    body: JSON.stringify({ url }),
    headers: { "content-type": "application/json" },
  });
  assert.equal(r.status, 400);
  await page.locator("#rejections tbody tr").nth(1).waitFor();
  const newest = page.locator("#rejections tbody tr").first();
  assert.equal(await newest.locator('[data-field="code"]').textContent(), "insecure_url");
  assert.match((await newest.textContent()) ?? "", /http:\/\/10\.255\.255\.1\/remote\.tar\.gz/);
  assert.deepEqual(pageErrors, []);
});
