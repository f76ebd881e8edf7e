/**
 * The admin page's Health section (real headless Chromium via playwright-core, real daemon): a badge per loaded
 * plugin from its health() (ok / down with the detail), the daemon's overall status, and the request rate a plugin
 * gets while a client calls it (then back to 0.0 once the client stops).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildPackage, startTestDaemon, until } from "../lifecycle/helpers.js";
import { launchChromium } from "./chromium.js";

const gz = { "content-type": "application/gzip" };

test("admin page: health badges per plugin, overall status, request rate", async (t) => {
  const d = await startTestDaemon();
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    await d.stop();
  });
  for (const p of [
    { name: "busy", version: "1.0.0" },
    {
      name: "broken",
      version: "1.0.0",
      extra: `export function health() { return { status: "down", detail: "queue unreachable" }; }`,
    },
  ]) {
    const body = readFileSync(await buildPackage(d.work, p));
    assert.equal((await d.api("POST", "/admin/api/plugins", { body, headers: gz })).status, 201);
  }
  const page = await browser.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${d.adminUrl}/admin/login?token=${encodeURIComponent(d.token)}`);
  const busy = page.locator('#health tbody tr[data-plugin="busy"]');
  const broken = page.locator('#health tbody tr[data-plugin="broken"]');
  await busy.locator('[data-field="health"][data-status="ok"]').waitFor();
  await broken.locator('[data-field="health"][data-status="down"]').waitFor();
  assert.equal(await broken.locator('[data-field="detail"]').textContent(), "queue unreachable");
  assert.equal(await page.locator("#health-overall").getAttribute("data-status"), "degraded");
  assert.equal(await page.locator("#no-health").isVisible(), false);

  // ~20 requests a second to `busy` while the page polls: its rate shows them, `broken`'s stays 0.
  let running = true;
  let sent = 0;
  const client = (async () => {
    while (running) {
      const r = await fetch(`${d.url}/plugin/busy/api/who`);
      await r.arrayBuffer();
      sent++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const rateOf = async (row: typeof busy) => Number(await row.locator('[data-field="rate"]').textContent());
  const seen = await until(
    async () => {
      const r = await rateOf(busy);
      return r >= 5 ? r : undefined;
    },
    15_000,
    "busy's rate on the page",
  );
  assert.ok((seen ?? 0) < 60, `rate ${seen} req/s for ~20 sent a second`);
  assert.equal(await rateOf(broken), 0);
  running = false;
  await client;
  const count = await until(
    async () => {
      const n = Number(await busy.locator('[data-field="requests"]').textContent());
      return n >= sent ? n : undefined;
    },
    10_000,
    "request count on the page",
  );
  assert.equal(count, sent);
  await until(async () => (await rateOf(busy)) === 0, 10_000, "rate back to 0 once the client stopped");
  assert.deepEqual(pageErrors, []);
});
