// @ts-check
// The admin page's "Health" section, a component of its own: each loaded plugin's health badge (GET /admin/api/health,
// the same answers as /health on the plugin port) and its request rate, from two successive request counts.
// Polled every few seconds while the page is open.

const POLL_MS = 2000;

/** @typedef {{status:"ok"|"degraded"|"down",detail?:string,requests:number|null}} PluginHealth */

/** Last sample per plugin: request count and when it was taken (ms). @type {Map<string,{requests:number,at:number}>} */
const last = new Map();

/** @param {string} tag @param {Record<string,string>} [attrs] @param {(Node|string)[]} [children] */
function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** Requests per second since the previous sample, or "" on the first one. @param {string} name @param {PluginHealth} h @param {number} now */
function rate(name, h, now) {
  if (h.requests === null) return "metrics off";
  const prev = last.get(name);
  last.set(name, { requests: h.requests, at: now });
  if (!prev || now <= prev.at || h.requests < prev.requests) return "…";
  return ((h.requests - prev.requests) / ((now - prev.at) / 1000)).toFixed(1);
}

/** @param {{status:string,plugins:Record<string,PluginHealth>}} body */
function render(body) {
  const now = performance.now();
  const names = Object.keys(body.plugins).sort();
  const overall = /** @type {HTMLElement} */ (document.querySelector("#health-overall"));
  overall.textContent = body.status;
  overall.dataset.status = body.status;
  const tbody = /** @type {HTMLElement} */ (document.querySelector("#health tbody"));
  tbody.replaceChildren(
    ...names.map((name) => {
      const h = body.plugins[name];
      return el("tr", { "data-plugin": name }, [
        el("td", {}, [name]),
        el("td", {}, [el("span", { class: "badge", "data-field": "health", "data-status": h.status }, [h.status])]),
        el("td", { "data-field": "detail" }, [h.detail ?? ""]),
        el("td", { "data-field": "rate", class: "num" }, [rate(name, h, now)]),
        el("td", { "data-field": "requests", class: "num" }, [h.requests === null ? "-" : String(h.requests)]),
      ]);
    }),
  );
  /** @type {HTMLElement} */ (document.querySelector("#no-health")).hidden = names.length > 0;
}

async function poll() {
  try {
    const res = await fetch("/admin/api/health", { credentials: "same-origin" });
    if (res.ok) render(await res.json());
  } catch {
    // the page's own connection status says when the daemon is away
  }
}

void poll();
setInterval(poll, POLL_MS);
