// @ts-check
// hecate admin page: plain ES module, no build step. Talks only to the admin API (same origin, cookie auth set by
// /admin/login?token=...). Live status comes from the SSE stream /admin/api/events. Plugin pages live on another
// origin (the plugin port) by default, so links to them are absolute.

import { pullNodes, setupOciForm } from "./oci.js";
import { showSettings } from "./settings-form.js";

const API = "/admin/api";

/** @typedef {{name:string,version:string,type:string,status:string,flags:string[],routes:{method:string,path:string}[],url:string,apiUrl:string,lastError:{stage:string,code:string,message:string,at:string}|null,installedAt:string,updatedAt:string,restarts:number,image?:string|null,pull?:import("./oci.js").PullProgress|null,manifest?:unknown}} PluginView */

/** @type {Map<string, PluginView>} */
const plugins = new Map();
/** @type {string | null} */
let selected = null;
/** Origin of plugin pages: "" (this origin) when the daemon serves admin and plugins on one port. */
let pluginBase = "";
/** Name of the plugin whose upload this page started last (its progress is shown under the drop zone). */
/** @type {string | null} */
let lastUpload = null;

const $ = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (document.querySelector(sel));

/** @param {string} tag @param {Record<string,string>} [attrs] @param {(Node|string)[]} [children] */
function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** @param {string} path @param {RequestInit} [init] */
async function api(path, init) {
  const res = await fetch(`${API}${path}`, { credentials: "same-origin", ...init });
  const text = await res.text();
  const body = text ? JSON.parse(text) : undefined;
  if (res.status === 401) signedOut("Your login session has expired or was revoked.");
  if (!res.ok) {
    const e = body?.error ?? { code: `http_${res.status}`, message: text };
    throw Object.assign(new Error(`${e.message} [${e.code}]`), { code: e.code, details: e.details });
  }
  return body;
}

/** @param {string} text @param {boolean} [isError] */
function setUploadStatus(text, isError = false) {
  const s = $("#upload-status");
  s.textContent = text;
  s.className = isError ? "error" : "";
}

function render() {
  const tbody = /** @type {HTMLTableSectionElement} */ ($("#plugins tbody"));
  const names = [...plugins.keys()].sort();
  tbody.replaceChildren(...names.map((n) => row(/** @type {PluginView} */ (plugins.get(n)))));
  $("#empty").hidden = names.length > 0;
}

/** @param {PluginView} p */
function row(p) {
  const tr = el("tr", { "data-plugin": p.name });
  if (p.name === selected) tr.classList.add("selected");
  const nameCell = el("td", {}, [
    el("a", { href: pluginBase + p.url, target: "_blank", rel: "noopener", "data-field": "link" }, [p.name]),
  ]);
  const routes = el("td", { class: "routes" }, [
    (p.routes ?? []).map((r) => `${r.method} ${r.path}`).join("\n") || "-",
  ]);
  routes.style.whiteSpace = "pre";
  const lastError = el("td", { class: "error", "data-field": "last-error" }, [
    p.lastError ? `${p.lastError.code}: ${p.lastError.message}` : "",
  ]);
  const actions = el("td", {});
  const activated = (p.flags ?? []).includes("ACTIVATED") || p.status === "loaded" || p.status === "activated";
  if (activated) actions.append(button("Deactivate", "deactivate", p.name));
  else actions.append(button("Activate", "activate", p.name));
  actions.append(button("Remove", "remove", p.name, "danger"));
  actions.append(button("Details", "details", p.name));
  tr.append(
    nameCell,
    el("td", {}, [p.version]),
    el("td", {}, [p.type]),
    el("td", { class: "status", "data-field": "status", "data-status": p.status }, [
      p.status,
      ...pullNodes(p, cancelPull),
    ]),
    routes,
    lastError,
    actions,
  );
  return tr;
}

/** Cancels a plugin's image pull (the row's Cancel button). @param {string} name @param {HTMLButtonElement} b */
async function cancelPull(name, b) {
  b.disabled = true;
  try {
    const view = await api(`/plugins/${encodeURIComponent(name)}/cancel`, { method: "POST" });
    if (view.status === "removed") plugins.delete(name);
    else plugins.set(name, view);
    setUploadStatus(`${name}: pull cancelled`);
    render();
  } catch (err) {
    setUploadStatus(`cancel ${name} failed: ${/** @type {Error} */ (err).message}`, true);
    b.disabled = false;
  }
}

/** @param {string} label @param {string} action @param {string} name @param {string} [cls] */
function button(label, action, name, cls = "") {
  const b = el("button", { type: "button", "data-action": action, class: cls }, [label]);
  b.addEventListener("click", () => onAction(action, name, /** @type {HTMLButtonElement} */ (b)));
  return b;
}

/** @param {string} action @param {string} name @param {HTMLButtonElement} b */
async function onAction(action, name, b) {
  if (action === "details") return showDetails(name);
  if (action === "remove" && !confirm(`Remove ${name}? Its data is kept.`)) return;
  b.disabled = true;
  try {
    const n = encodeURIComponent(name);
    if (action === "remove") {
      await api(`/plugins/${n}`, { method: "DELETE" });
      plugins.delete(name);
      if (selected === name) hideDetails();
    } else {
      plugins.set(name, await api(`/plugins/${n}/${action}`, { method: "POST" }));
    }
    render();
  } catch (err) {
    setUploadStatus(`${action} ${name} failed: ${/** @type {Error} */ (err).message}`, true);
    b.disabled = false;
  }
}

function hideDetails() {
  selected = null;
  $("#details").hidden = true;
}

/** @param {string} name */
async function showDetails(name) {
  selected = name;
  render();
  const n = encodeURIComponent(name);
  const [view, { events }] = await Promise.all([api(`/plugins/${n}`), api(`/plugins/${n}/events`)]);
  $("#details-title").textContent = `${view.name} ${view.version} — ${view.status}`;
  const err = $("#details-error");
  err.hidden = !view.lastError;
  err.textContent = view.lastError
    ? `Last error (${view.lastError.stage}, ${view.lastError.at}): ${view.lastError.code}: ${view.lastError.message}`
    : "";
  const tbody = /** @type {HTMLTableSectionElement} */ ($("#history tbody"));
  tbody.replaceChildren(
    ...events.map((/** @type {any} */ e) =>
      el("tr", { "data-event": e.type }, [
        el("td", {}, [String(e.revision)]),
        el("td", {}, [new Date(e.createdAt).toLocaleString()]),
        el("td", {}, [e.type]),
        el("td", { class: "routes" }, [e.data && Object.keys(e.data).length ? JSON.stringify(e.data) : ""]),
      ]),
    ),
  );
  $("#manifest").textContent = JSON.stringify(view.manifest ?? {}, null, 2);
  $("#details").hidden = false;
  if (view.status !== "removed") await showSettings($("#settings"), name, api);
}

/** Uploads with XHR (fetch has no upload progress); the row then follows the lifecycle live over SSE. */
function install(/** @type {File} */ file) {
  if (!/\.(tar\.gz|tgz)$/i.test(file.name)) {
    setUploadStatus(`${file.name} is not a .tar.gz package`, true);
    return;
  }
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `${API}/plugins?wait=none`);
  xhr.setRequestHeader("content-type", "application/gzip");
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setUploadStatus(`Uploading ${file.name}: ${Math.round((100 * e.loaded) / e.total)}%`);
  };
  xhr.onload = () => {
    let body;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      body = undefined;
    }
    if (xhr.status >= 200 && xhr.status < 300 && body) {
      // the SSE stream may already have brought a newer view of it: never go back to an older one
      if (!plugins.has(body.name)) plugins.set(body.name, body);
      lastUpload = body.name;
      render();
      showInstallProgress(/** @type {PluginView} */ (plugins.get(body.name)));
    } else {
      const e = body?.error ?? { code: `http_${xhr.status}`, message: xhr.responseText };
      setUploadStatus(`Install of ${file.name} refused: ${e.message} [${e.code}]`, true);
    }
  };
  xhr.onerror = () => setUploadStatus(`Upload of ${file.name} failed (connection error)`, true);
  setUploadStatus(`Uploading ${file.name}…`);
  xhr.send(file);
}

/** @param {PluginView} view */
function showInstallProgress(view) {
  if (view.status === "loaded") setUploadStatus(`${view.name} ${view.version} is loaded`);
  else if (view.status === "failed")
    setUploadStatus(`${view.name} failed: ${view.lastError?.message ?? "unknown error"}`, true);
  else if (view.status === "removed") setUploadStatus(`${view.name}: nothing installed (pull cancelled)`);
  else setUploadStatus(`${view.name} ${view.version}: ${view.status}…`);
}

function setupDropzone() {
  const zone = $("#dropzone");
  const input = /** @type {HTMLInputElement} */ ($("#file-input"));
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const file = e.dataTransfer?.files[0];
    if (file) install(file);
  });
  input.addEventListener("change", () => {
    const file = input.files?.[0];
    if (file) install(file);
    input.value = "";
  });
}

/** @typedef {{position:number,op:string,code:string,message:string,source:string,path?:string,url?:string,plugin:string|null,bytes:number|null,sha256:string|null,at:string}} Rejection */

/** Where a refused package came from: the operator's path, the package URL, or "upload". @param {Rejection} r */
function rejectionSource(r) {
  if (r.source === "path") return r.path ?? "path";
  if (r.source === "url") return r.url ?? "url";
  return "upload";
}

const MAX_REJECTIONS = 20;
/** Refused packages, newest first: loaded from the API, then kept current by the SSE `rejection` events. */
/** @type {Rejection[]} */
let rejections = [];

function renderRejections() {
  const tbody = /** @type {HTMLTableSectionElement} */ ($("#rejections tbody"));
  tbody.replaceChildren(
    ...rejections.map((r) =>
      el("tr", { "data-position": String(r.position) }, [
        el("td", {}, [new Date(r.at).toLocaleString()]),
        el("td", {}, [r.op]),
        el("td", {}, [r.plugin ?? "-"]),
        el("td", { "data-field": "code" }, [r.code]),
        el("td", {}, [r.message]),
        el("td", {}, [rejectionSource(r)]),
        el("td", { class: "sha", title: r.sha256 ?? "" }, [r.sha256 ? r.sha256.slice(0, 12) : "-"]),
      ]),
    ),
  );
  $("#no-rejections").hidden = rejections.length > 0;
}

async function reloadRejections() {
  rejections = (await api(`/rejections?limit=${MAX_REJECTIONS}`)).rejections;
  renderRejections();
}

async function reload() {
  const { plugins: list, pluginPort } = await api("/plugins");
  pluginBase = pluginPort ? `${location.protocol}//${location.hostname}:${pluginPort}` : "";
  plugins.clear();
  for (const p of list) plugins.set(p.name, p);
  render();
}

function connectEvents() {
  const status = $("#connection");
  const source = new EventSource(`${API}/events`);
  events = source;
  source.addEventListener("open", () => {
    status.dataset.state = "open";
    status.textContent = "live";
    // resync after a reconnect: events sent while we were away are not replayed
    reload().catch((err) => setUploadStatus(err.message, true));
    reloadRejections().catch((err) => setUploadStatus(err.message, true));
  });
  source.addEventListener("error", () => {
    status.dataset.state = "closed";
    status.textContent = "reconnecting…";
    // a refused stream (e.g. 401: session over) is not retried by the browser: find out why
    if (source.readyState === EventSource.CLOSED) reload().catch(() => {});
  });
  source.addEventListener("rejection", (msg) => {
    const r = /** @type {Rejection} */ (JSON.parse(/** @type {MessageEvent} */ (msg).data));
    if (rejections.some((x) => x.position === r.position)) return; // already in a reload's answer
    rejections = [r, ...rejections].slice(0, MAX_REJECTIONS);
    renderRejections();
  });
  source.addEventListener("lifecycle", (msg) => {
    const e = JSON.parse(/** @type {MessageEvent} */ (msg).data);
    const view = e.view;
    if (!view) return;
    if (view.status === "removed") plugins.delete(view.name);
    else plugins.set(view.name, view);
    render();
    if (e.plugin === selected) showDetails(e.plugin).catch(() => {});
    if (view.name === lastUpload) showInstallProgress(view);
  });
}

/** @type {EventSource | null} */
let events = null;

/** The session is gone (logged out, expired, revoked): stop and say how to log in again. @param {string} why */
function signedOut(why) {
  events?.close();
  $("main").hidden = true;
  $("#logout").hidden = true;
  const p = $("#signed-out");
  p.textContent = `${why} Open the login link again (printed by \`hecate start\`: /admin/login?token=…).`;
  p.hidden = false;
}

$("#logout").addEventListener("click", async () => {
  await fetch("/admin/logout", { method: "POST", credentials: "same-origin" }).catch(() => {});
  signedOut("Logged out.");
});

setupDropzone();
setupOciForm(
  api,
  (view) => {
    if (!plugins.has(view.name)) plugins.set(view.name, view);
    lastUpload = view.name;
    render();
    showInstallProgress(/** @type {PluginView} */ (plugins.get(view.name)));
  },
  setUploadStatus,
);
connectEvents();
