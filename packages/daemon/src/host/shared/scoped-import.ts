/** Imports in a shared plugin's own module scope (see scope-hooks.ts). */
import { register } from "node:module";
import { SCOPE_PARAM } from "./scope-hooks.js";

let registered = false;

/** Registers the scope hooks once per process (they affect imports made on this thread from then on). */
export function ensureScopeHooks(): void {
  if (registered) return;
  register(new URL("./scope-hooks.js", import.meta.url).href);
  registered = true;
}

/** `url` (a file: URL) in scope `scope`: importing it loads it and everything it imports afresh for that scope. */
export function scopedUrl(url: string, scope: string): string {
  const u = new URL(url);
  u.searchParams.set(SCOPE_PARAM, scope);
  return u.href;
}
