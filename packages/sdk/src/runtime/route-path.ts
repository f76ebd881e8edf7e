/** Route paths are relative to the API prefix: no way out of it (`..`, `//`, encoded chars, query). */
export function validateRoutePath(path: unknown): string | null {
  if (typeof path !== "string" || !path.startsWith("/")) return "must be a string starting with /";
  if (/[?#%\\\s\0]/.test(path)) return "must not contain ? # % \\, whitespace or NUL";
  if (path.includes("//")) return "must not contain //";
  if (path.split("/").some((s) => s === ".." || s === ".")) return "must not contain . or .. segments";
  return null;
}

/**
 * Matches the subset of find-my-way's syntax plugins use (`/a/:id`, `/files/*`). The SDK has no router dependency:
 * the test harness and container plugins (`@hecate/sdk/container`) match with this; the daemon's in-process routes
 * use find-my-way.
 */
export function matchPath(pattern: string, path: string): Record<string, string> | null {
  const ps = pattern.split("/");
  const xs = path.split("/");
  const params: Record<string, string> = {};
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    if (p === "*") {
      params["*"] = decodeURIComponent(xs.slice(i).join("/"));
      return params;
    }
    if (i >= xs.length) return null;
    if (p.startsWith(":")) {
      if (xs[i] === "") return null;
      params[p.slice(1)] = decodeURIComponent(xs[i]);
    } else if (p !== xs[i]) return null;
  }
  return ps.length === xs.length ? params : null;
}
