// Mounting one plugin's UI into the shell.
// - Trusted (in-process) plugins: the module is imported into the page and its default export (the element class)
//   registered and created here, with api-base / plugin-name / plugin-version attributes.
// - Container plugins (untrusted): a sandboxed iframe (no allow-same-origin: an opaque origin, no access to this
//   DOM, no cookies of this page) whose document (/shell/frame/{name}) mounts the element itself; its only way to its
//   plugin's API is the bridge below, bound to that frame, which answers for that plugin's API prefix only.

const SANDBOX = "allow-scripts allow-forms";
const SAFE_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
const BRIDGED_HEADERS = ["accept", "content-type"];

/** `${name}@${version}` -> the tag its class is registered under. */
const tags = new Map();
let generation = 0;

/**
 * Custom elements can be neither redefined nor unregistered, and one class can be registered once. So the shell,
 * not the module, registers the class: the first version of a plugin gets the declared name, each later version
 * (an upgrade, imported again under `?v={version}`: a new module instance, a new class) gets `{element}--{n}`.
 * The old classes stay registered, unused, until the page reloads: one per upgrade this page has seen.
 * A module that registered its class itself (defineElement, for its standalone page) keeps that name.
 * Only the entry module is re-imported: modules it imports by relative URL are cached by their URL, so a UI split
 * into several files should bundle them or version their URLs too.
 */
async function tagFor(p) {
  const key = `${p.name}@${p.version}`;
  const known = tags.get(key);
  if (known) return known;
  const mod = await import(`${p.ui.url}?v=${encodeURIComponent(p.version)}`);
  const cls = mod.default;
  if (typeof cls !== "function" || !(cls.prototype instanceof HTMLElement))
    throw new Error(`${p.ui.module} must export default a custom element class (see @hecate/sdk/ui)`);
  let tag = customElements.getName?.(cls) ?? null;
  if (!tag) {
    tag = p.ui.element;
    while (customElements.get(tag)) tag = `${p.ui.element}--${++generation}`;
    customElements.define(tag, cls);
  }
  tags.set(key, tag);
  return tag;
}

/** Mounts `p` (a ShellPlugin with a UI) into `host`; resolves to its unmount function. */
export async function mountPlugin(p, host) {
  if (p.ui.sandboxed) return mountFrame(p, host);
  const tag = await tagFor(p);
  const el = document.createElement(tag);
  el.setAttribute("api-base", p.apiBase);
  el.setAttribute("plugin-name", p.name);
  el.setAttribute("plugin-version", p.version);
  host.append(el);
  return () => el.remove();
}

function mountFrame(p, host) {
  const frame = document.createElement("iframe");
  frame.setAttribute("sandbox", SANDBOX);
  frame.title = `${p.name} ${p.version}`;
  frame.src = `/shell/frame/${encodeURIComponent(p.name)}?v=${encodeURIComponent(p.version)}`;
  const onMessage = (e) => {
    // Bound to this frame's window (whatever document it holds): the plugin's own API, nothing else.
    if (e.source !== frame.contentWindow || e.data?.t !== "hecate-bridge" || !e.ports[0]) return;
    serveBridge(e.ports[0], p.apiBase);
  };
  addEventListener("message", onMessage);
  host.append(frame);
  return Promise.resolve(() => {
    removeEventListener("message", onMessage);
    frame.remove();
  });
}

/** Answers `{ id, method, path, headers, body }` requests for `apiBase + path` with the page's (same-origin) fetch. */
function serveBridge(port, apiBase) {
  port.onmessage = async ({ data }) => {
    const { id } = data ?? {};
    try {
      const url = new URL(apiBase + String(data.path ?? ""), location.origin);
      // URL parsing resolves `..` (also %2e%2e): what is left must still be under the plugin's API prefix.
      if (url.origin !== location.origin || !(url.pathname === apiBase || url.pathname.startsWith(`${apiBase}/`)))
        throw new Error(`not under ${apiBase}`);
      const method = String(data.method ?? "GET").toUpperCase();
      if (!SAFE_METHODS.includes(method)) throw new Error(`method ${method} not allowed`);
      const headers = {};
      for (const h of BRIDGED_HEADERS) if (typeof data.headers?.[h] === "string") headers[h] = data.headers[h];
      const body = typeof data.body === "string" && method !== "GET" && method !== "HEAD" ? data.body : undefined;
      const res = await fetch(url, { method, headers, body, credentials: "same-origin", redirect: "error" });
      const text = await res.text();
      const type = res.headers.get("content-type");
      port.postMessage({
        id,
        status: res.status,
        statusText: res.statusText,
        headers: type ? { "content-type": type } : {},
        body: text,
      });
    } catch (err) {
      port.postMessage({ id, error: String(err?.message ?? err) });
    }
  };
}
