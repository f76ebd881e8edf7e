// Inside the sandboxed iframe of a container plugin's UI (opaque origin): imports the plugin's module, registers
// its element (a fresh document: no versioning needed, an upgrade reloads the frame) and mounts it. `apiFetch`
// sends the element's API calls through the shell's bridge (mount.js), the frame's only way to its plugin's API.
const d = document.body.dataset;
const channel = new MessageChannel();
const pending = new Map();
let seq = 0;
channel.port1.onmessage = ({ data }) => {
  const p = pending.get(data.id);
  if (!p) return;
  pending.delete(data.id);
  if (data.error) p.reject(new TypeError(`bridge: ${data.error}`));
  else {
    const nullBody = [101, 204, 205, 304].includes(data.status);
    p.resolve(
      new Response(nullBody ? null : data.body, {
        status: data.status,
        statusText: data.statusText,
        headers: data.headers,
      }),
    );
  }
};
parent.postMessage({ t: "hecate-bridge" }, "*", [channel.port2]);

/** fetch() of `{api-base}{path}` through the shell. */
function apiFetch(input, init = {}) {
  const url = String(input instanceof Request ? input.url : input);
  const base = d.apiBase;
  const path = url.startsWith(base) ? url.slice(base.length) : null;
  if (path === null) return Promise.reject(new TypeError(`apiFetch only reaches ${base}`));
  const id = ++seq;
  const headers = Object.fromEntries(new Headers(init.headers));
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    channel.port1.postMessage({ id, method: init.method ?? "GET", path, headers, body: init.body });
  });
}

try {
  const mod = await import(d.module);
  const cls = mod.default;
  if (typeof cls !== "function" || !(cls.prototype instanceof HTMLElement))
    throw new Error("the UI module must export default a custom element class (see @hecate/sdk/ui)");
  if (!customElements.getName?.(cls)) customElements.define(d.element, cls);
  const el = document.createElement(customElements.getName?.(cls) ?? d.element);
  el.apiFetch = apiFetch;
  el.setAttribute("api-base", d.apiBase);
  el.setAttribute("plugin-name", d.name);
  el.setAttribute("plugin-version", d.version);
  document.body.append(el);
} catch (err) {
  const p = document.createElement("p");
  p.textContent = `The UI of ${d.name} failed to load: ${err.message}`;
  document.body.append(p);
}
