/**
 * Module loader hooks (registered with `module.register`, run on Node's loader thread) that give every generation of
 * a shared plugin its own module graph: the plugin's entry is imported as `...index.js?hecate-shared=<scope>`, and
 * every `file:` module that a scoped module imports gets the same `hecate-shared` parameter. ESM caches modules by
 * URL, so each scope gets fresh copies of the plugin's own files (an upgrade really runs the new code, even when the
 * files keep their paths) and of `@hecate/sdk` (its module-level state, e.g. `getConfig()`, the log sink and the
 * terminate hooks, is per plugin as in a worker thread). Node builtins stay shared. CommonJS files are cached by
 * path by Node's `require`, whatever the URL: they are shared by every generation (see the README).
 *
 * Written by hand (no library does this): a resolve hook is the only way to re-key a module graph; it costs a few
 * microseconds per import, at load time only, and only on the plugin host's main thread (Node 20 does not apply
 * hooks registered there to worker threads, so worker plugins are untouched).
 */
export const SCOPE_PARAM = "hecate-shared";

interface ResolveContext {
  parentURL?: string;
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<{ url: string; format?: string | null }>;

export async function resolve(
  specifier: string,
  context: ResolveContext,
  next: NextResolve,
): Promise<{ url: string; format?: string | null }> {
  const resolved = await next(specifier, context);
  const parent = context.parentURL;
  const q = parent?.indexOf("?") ?? -1;
  if (!parent || q < 0 || !resolved.url.startsWith("file:")) return resolved;
  const scope = new URLSearchParams(parent.slice(q + 1)).get(SCOPE_PARAM);
  if (!scope) return resolved;
  const url = new URL(resolved.url);
  if (url.searchParams.has(SCOPE_PARAM)) return resolved;
  url.searchParams.set(SCOPE_PARAM, scope);
  return { ...resolved, url: url.href };
}
