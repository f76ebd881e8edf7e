/** Shared by the app shell tests: plugins that declare a UI, and lifecycle calls through the real admin API. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import type { Page } from "playwright-core";
import { buildPackage, type PluginSource, type TestDaemon } from "../lifecycle/helpers.js";

const gz = { "content-type": "application/gzip" };

/**
 * A UI module written as a plugin author would (no build step): the SDK's HecateElement through the shell's import
 * map, its API called with `this.api()`. It renders what its own API answers, and the attributes the shell set.
 */
export const WHO_ELEMENT = `import { HecateElement } from "@hecate/sdk/ui";
export default class extends HecateElement {
  async render() {
    const who = await this.api("/who");
    const p = document.createElement("p");
    p.className = "who";
    p.textContent = who.name + " " + who.version + " @ " + this.apiBase + " (" + this.pluginVersion + ")";
    this.root.replaceChildren(p);
  }
}
`;

/** A worker plugin with `ui: { element: "{name}-app", module: "ui.js" }` (WHO_ELEMENT unless `ui` is given). */
export function uiPlugin(name: string, version: string, ui = WHO_ELEMENT, extra: Partial<PluginSource> = {}) {
  return {
    name,
    version,
    ...extra,
    manifest: { ui: { element: `${name}-app`, module: "ui.js" }, ...extra.manifest },
    files: { "priv/static/ui.js": ui, ...extra.files },
  };
}

export async function install(d: TestDaemon, p: PluginSource): Promise<void> {
  const body = readFileSync(await buildPackage(d.work, p));
  const r = await d.api("POST", "/admin/api/plugins?wait=loaded", { body, headers: gz });
  assert.equal(r.status, 201, await r.text());
}

export async function upgrade(d: TestDaemon, p: PluginSource): Promise<void> {
  const body = readFileSync(await buildPackage(d.work, p));
  const r = await d.api("POST", `/admin/api/plugins/${p.name}/upgrade`, { body, headers: gz });
  assert.ok(r.status < 300, `upgrade: ${r.status} ${await r.text()}`);
}

export async function remove(d: TestDaemon, name: string): Promise<void> {
  const r = await d.api("DELETE", `/admin/api/plugins/${name}`);
  assert.ok(r.status < 300, `remove: ${r.status} ${await r.text()}`);
}

/** Page errors and console errors (a CSP violation is logged as a console error). */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}
