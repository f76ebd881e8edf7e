/**
 * The settings form on the admin page (real headless Chromium via playwright-core, real daemon and plugin): generated
 * from the schema (text, number, enum, boolean, secret as a password input saying "set" / "not set"), a refused save
 * shows the field's error and stores nothing, a good one is applied live, and the secret never reaches the page.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { buildPackage, startTestDaemon } from "../lifecycle/helpers.js";
import { launchChromium } from "./chromium.js";
import { settingsPlugin } from "./settings-plugin.js";

const SECRET = `sk-ui-${Date.now().toString(36)}-secret`;

test("admin page: settings form from the schema, field errors, live save, secrets only as set / not set", async (t) => {
  const d = await startTestDaemon();
  const browser = await launchChromium();
  t.after(async () => {
    await browser.close();
    await d.stop();
  });
  const pkg = await buildPackage(d.work, settingsPlugin("1.0.0", { callback: true }));
  const r = await d.api("POST", "/admin/api/plugins", {
    body: readFileSync(pkg),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());

  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  const pageErrors: string[] = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  const bodies: Promise<string>[] = [];
  page.on("response", (res) => {
    // every answer but the never-ending SSE stream (its events are checked by settings.test.ts)
    if (res.url().includes("/admin/api/") && !res.url().endsWith("/admin/api/events"))
      bodies.push(res.text().catch(() => ""));
  });
  await page.goto(`${d.adminUrl}/admin/login?token=${encodeURIComponent(d.token)}`);
  await page.waitForSelector('#connection[data-state="open"]');
  await page.click('tr[data-plugin="cfg"] button[data-action="details"]');
  const form = page.locator("#settings-form");
  await form.waitFor();

  // one input per property, of the schema's kind
  const kinds = await form
    .locator("[name]")
    .evaluateAll((els) => els.map((e) => [e.getAttribute("name"), e.tagName.toLowerCase(), e.getAttribute("type")]));
  assert.deepEqual(kinds, [
    ["greeting", "input", "text"],
    ["limit", "input", "number"],
    ["mode", "select", null],
    ["verbose", "input", "checkbox"],
    ["apiKey", "input", "password"],
  ]);
  assert.equal(await form.locator('[name="greeting"]').getAttribute("placeholder"), 'default: "hi"');
  assert.deepEqual(await form.locator('[name="mode"] option').allTextContents(), ["(not set)", "fast", "safe"]);
  assert.equal(await form.locator("[data-secret-state]").textContent(), "not set");

  // a value the schema refuses: the field's error is shown, nothing is stored
  await form.locator('[name="limit"]').fill("0");
  await page.click("#settings-save");
  await page.locator('[data-error-for="limit"]', { hasText: /./ }).waitFor();
  assert.match((await form.locator('[data-error-for="limit"]').textContent()) ?? "", /must be >= 1/);
  assert.match((await page.locator("#settings-status").textContent()) ?? "", /not saved/);
  assert.deepEqual((await (await d.api("GET", "/admin/api/plugins/cfg/settings")).json()).values, {});

  // a good save: applied live; the secret is then only "set"
  await form.locator('[name="limit"]').fill("25");
  await form.locator('[name="mode"]').selectOption({ label: "safe" });
  await form.locator('[name="verbose"]').check();
  await form.locator('[name="apiKey"]').fill(SECRET);
  await page.click("#settings-save");
  await page.locator("#settings-status", { hasText: "applied live" }).waitFor();
  await page.waitForSelector('[data-secret-state="set"]');
  assert.equal(await page.locator('#settings-form [name="apiKey"]').inputValue(), "");
  assert.equal(await page.locator('#settings-form [name="limit"]').inputValue(), "25");
  const stored = await (await d.api("GET", "/admin/api/plugins/cfg/settings")).json();
  assert.deepEqual(stored.values, { limit: 25, mode: "safe", verbose: true });
  assert.deepEqual(stored.secrets, { apiKey: { set: true } });
  const got = (await (await fetch(`${d.url}/plugin/cfg/api/settings`)).json()) as {
    changes: number;
    now: Record<string, unknown>;
  };
  assert.equal(got.changes, 1, "onSettingsChanged ran once");
  assert.equal(got.now.limit, 25);
  assert.equal(typeof got.now.apiKey, "string");

  // emptying a field unsets it; "clear" removes the secret
  await page.locator('#settings-form [name="limit"]').fill("");
  await page.locator("#settings-form [data-clear=apiKey]").check();
  await page.click("#settings-save");
  await page.waitForSelector('[data-secret-state="not set"]');
  const cleared = await (await d.api("GET", "/admin/api/plugins/cfg/settings")).json();
  assert.deepEqual(cleared.values, { mode: "safe", verbose: true });
  assert.deepEqual(cleared.secrets, { apiKey: { set: false } });

  const html = await page.content();
  assert.ok(!html.includes(SECRET), "the secret is not in the page");
  const texts = await Promise.all(bodies);
  assert.ok(texts.length > 5);
  assert.ok(!texts.some((b) => b.includes(SECRET)), "no admin API answer to the page holds the secret");
  assert.deepEqual(pageErrors, []);
});
