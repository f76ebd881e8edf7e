/**
 * Atomic exchange of two paths (Linux renameat2 with RENAME_EXCHANGE). Plugins are served by plugin-host processes
 * while the supervisor installs an upgrade: with two renames (old aside, new in place) a static request of the host
 * can land between them and see no package dir at all. Exchanging the two dirs in one syscall leaves no such moment.
 * Node has no binding for renameat2, so it is called through koffi (already the daemon's FFI for SO_PEERCRED).
 */
const AT_FDCWD = -100;
const RENAME_EXCHANGE = 2;

type Exchange = (a: string, b: string) => number;
let impl: Exchange | null | undefined;

async function load(): Promise<Exchange | null> {
  if (impl !== undefined) return impl;
  try {
    if (process.platform !== "linux") throw new Error("renameat2 is Linux only");
    const { default: koffi } = await import("koffi");
    const libc = koffi.load("libc.so.6");
    const renameat2 = libc.func("int renameat2(int, const char *, int, const char *, unsigned int)");
    impl = (a, b) => renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) as number;
  } catch {
    impl = null;
  }
  return impl;
}

/** Exchanges `a` and `b` (both must exist) atomically; false when the platform or filesystem cannot. */
export async function exchangePaths(a: string, b: string): Promise<boolean> {
  const fn = await load();
  return fn !== null && fn(a, b) === 0;
}
