/** Route paths are relative to the API prefix: no way out of it (`..`, `//`, encoded chars, query). */
export function validateRoutePath(path: unknown): string | null {
  if (typeof path !== "string" || !path.startsWith("/")) return "must be a string starting with /";
  if (/[?#%\\\s\0]/.test(path)) return "must not contain ? # % \\, whitespace or NUL";
  if (path.includes("//")) return "must not contain //";
  if (path.split("/").some((s) => s === ".." || s === ".")) return "must not contain . or .. segments";
  return null;
}
