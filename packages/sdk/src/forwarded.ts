/**
 * The client address behind the daemon's proxy: `Forwarded` (RFC 7239) and `X-Forwarded-For`, one rule for both.
 *
 * The daemon's container proxy APPENDS one hop to each header (the address of the socket it accepted), so the
 * rightmost entry is the only one the daemon vouches for; everything to its left is what the client claimed. Readers
 * therefore take the rightmost entry, never the leftmost (a client would choose its own address otherwise).
 *
 * Hand-written rather than a dependency: the grammar is a dozen lines (RFC 7230 token / quoted-string), and the SDK is
 * mounted into every container, so each dependency it adds is code in every plugin's sandbox.
 */

/** One `Forwarded` element: lower-cased parameter names (`for`, `by`, `proto`, `host`) to unquoted values. */
export type ForwardedElement = Record<string, string>;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * Parses a `Forwarded` header value (elements separated by `,`, pairs by `;`). Returns undefined when the value is not
 * well-formed (an unbalanced quote, a pair without `=`, a name that is not a token...).
 */
export function parseForwarded(value: string): ForwardedElement[] | undefined {
  const out: ForwardedElement[] = [];
  let el: ForwardedElement = {};
  let i = 0;
  const n = value.length;
  const skipSpace = () => {
    while (i < n && (value[i] === " " || value[i] === "\t")) i++;
  };
  for (;;) {
    skipSpace();
    const eq = value.indexOf("=", i);
    if (eq < 0) return undefined;
    const name = value.slice(i, eq).trim().toLowerCase();
    if (!TOKEN.test(name)) return undefined;
    i = eq + 1;
    let v = "";
    if (value[i] === '"') {
      i++;
      for (;;) {
        if (i >= n) return undefined;
        const c = value[i++];
        if (c === '"') break;
        if (c === "\\") {
          if (i >= n) return undefined;
          v += value[i++];
        } else v += c;
      }
    } else {
      const start = i;
      while (i < n && value[i] !== ";" && value[i] !== "," && value[i] !== " " && value[i] !== "\t") i++;
      v = value.slice(start, i);
      if (!TOKEN.test(v)) return undefined;
    }
    if (Object.hasOwn(el, name)) return undefined; // RFC 7239 §4: a parameter occurs at most once per element
    el[name] = v;
    skipSpace();
    if (i >= n) break;
    const sep = value[i++];
    if (sep === ",") {
      out.push(el);
      el = {};
    } else if (sep !== ";") return undefined;
  }
  out.push(el);
  return out;
}

function quoteIfNeeded(v: string): string {
  return TOKEN.test(v) ? v : `"${v.replace(/["\\]/g, "\\$&")}"`;
}

/** An address as a `for=` / `by=` node: IPv6 in brackets (and then quoted, since `[` and `:` are not token chars). */
export function forwardedNode(address: string): string {
  return address.includes(":") ? `[${address}]` : address;
}

/** Serialises one element, quoting values that are not tokens. */
export function formatForwardedElement(el: ForwardedElement): string {
  let out = "";
  for (const k in el) out += `${out ? ";" : ""}${k}=${quoteIfNeeded(el[k])}`; // per proxied request: no arrays
  return out;
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(", ") : v;
}

/**
 * The client address the nearest proxy (the daemon) recorded: the `for` of the LAST `Forwarded` element, else the
 * LAST `X-Forwarded-For` entry; undefined when neither header gives one.
 */
export function forwardedClientAddress(headers: Record<string, string | string[] | undefined>): string | undefined {
  const fwd = headerValue(headers.forwarded);
  if (fwd) {
    const last = parseForwarded(fwd)?.at(-1)?.for;
    if (last) return last.startsWith("[") && last.includes("]") ? last.slice(1, last.indexOf("]")) : last;
  }
  const xff = headerValue(headers["x-forwarded-for"]);
  if (xff) {
    const last = xff.slice(xff.lastIndexOf(",") + 1).trim();
    if (last) return last;
  }
  return undefined;
}
