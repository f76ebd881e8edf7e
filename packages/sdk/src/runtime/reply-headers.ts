/**
 * Rules every plugin reply passes through, whichever path it took (worker thread or container proxy): one list of
 * hop-by-hop names and one test for cookies that only the daemon may set.
 */

/** Connection-scoped headers: never forwarded between the client and a plugin, in either direction. */
export const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/** Cookies whose name starts with this (any case) belong to the daemon (admin session); plugins may not set them. */
export const DAEMON_COOKIE_PREFIX = "hecate_";

/** True when a `Set-Cookie` value sets a cookie named like the daemon's (`hecate_*`). */
export function isDaemonCookie(setCookie: string): boolean {
  const eq = setCookie.indexOf("=");
  const name = (eq < 0 ? setCookie : setCookie.slice(0, eq)).trim().toLowerCase();
  return (
    name.startsWith(DAEMON_COOKIE_PREFIX) ||
    name.startsWith(`__host-${DAEMON_COOKIE_PREFIX}`) ||
    name.startsWith(`__secure-${DAEMON_COOKIE_PREFIX}`)
  );
}

/** A plugin's `set-cookie` header value(s) without the daemon's cookies; undefined when none is left. */
export function withoutDaemonCookies(value: string | string[] | undefined): string | string[] | undefined {
  if (value === undefined) return undefined;
  if (typeof value === "string") return isDaemonCookie(value) ? undefined : value;
  const kept = value.filter((v) => !isDaemonCookie(v));
  return kept.length ? kept : undefined;
}
