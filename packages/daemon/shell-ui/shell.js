// The app shell: navigation of the loaded plugins that declare a UI, followed live through the public endpoint
// (GET /api/shell/events, an SSE stream of the whole list), hash deep links (#/plugin/{name}), keyboard navigation
// and light/dark. Mounting an element (or a sandboxed frame) is mount.js's job.
import { mountPlugin } from "./mount.js";

const $ = (id) => document.getElementById(id);
const THEME_KEY = "hecate-shell-theme";

/** name -> ShellPlugin (see @hecate/sdk/ui), loaded and with a UI. */
let plugins = new Map();
/** What is mounted now: { name, version } or null. */
let shown = null;
let unmount = () => {};

function route() {
  const m = /^#\/plugin\/([^/?#]+)\/?$/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : null;
}

function renderNav() {
  const list = $("plugins");
  const focused = document.activeElement?.closest?.("#plugins a")?.dataset.plugin;
  list.replaceChildren();
  const current = route();
  for (const p of plugins.values()) {
    const a = document.createElement("a");
    a.href = `#/plugin/${encodeURIComponent(p.name)}`;
    a.dataset.plugin = p.name;
    a.dataset.version = p.version;
    if (p.ui.sandboxed) a.classList.add("sandboxed");
    if (p.description) a.title = p.description;
    const label = document.createElement("span");
    label.textContent = `${p.icon ? `${p.icon} ` : ""}${p.name}`;
    const version = document.createElement("span");
    version.className = "version";
    version.textContent = p.version;
    a.append(label, version);
    if (p.name === current) a.setAttribute("aria-current", "page");
    const li = document.createElement("li");
    li.append(a);
    list.append(li);
  }
  // Roving focus: one tab stop for the whole list (the current plugin, else the first); arrows move inside it.
  const links = [...list.querySelectorAll("a")];
  const stop = links.find((a) => a.dataset.plugin === current) ?? links[0];
  for (const a of links) a.tabIndex = a === stop ? 0 : -1;
  if (focused) links.find((a) => a.dataset.plugin === focused)?.focus();
  $("no-plugins").hidden = links.length > 0;
}

/** Mounts the plugin of the URL (again when its version changed), or the home view. */
function renderView() {
  const name = route();
  const p = name === null ? undefined : plugins.get(name);
  $("home").hidden = name !== null;
  $("view").hidden = name === null;
  if (name === null) {
    show(null);
    return;
  }
  const title = $("view-title");
  title.replaceChildren(document.createTextNode(name));
  if (!p) {
    show(null);
    status(`Plugin ${name} is not loaded (not installed, removed, inactive, or without a UI).`, "error");
    $("view").dataset.plugin = name;
    delete $("view").dataset.version;
    return;
  }
  const v = document.createElement("span");
  v.className = "version";
  v.textContent = p.version;
  title.append(v);
  if (shown?.name === p.name && shown.version === p.version && shown.url === p.ui.url) return;
  show(p);
}

function show(p) {
  unmount();
  unmount = () => {};
  $("mount").replaceChildren();
  status("");
  shown = p ? { name: p.name, version: p.version, url: p.ui.url } : null;
  if (!p) return;
  const view = $("view");
  view.dataset.plugin = p.name;
  view.dataset.version = p.version;
  view.dataset.state = "loading";
  const mine = shown;
  mountPlugin(p, $("mount")).then(
    (u) => {
      if (shown !== mine) return u();
      unmount = u;
      view.dataset.state = "mounted";
    },
    (err) => {
      if (shown !== mine) return;
      view.dataset.state = "failed";
      status(`The UI of ${p.name} ${p.version} failed to load: ${err.message}`, "error");
    },
  );
}

function status(text, kind = "info") {
  const s = $("view-status");
  s.textContent = text;
  s.dataset.kind = kind;
}

function apply(list) {
  plugins = new Map(list.filter((p) => p.status === "loaded" && p.ui).map((p) => [p.name, p]));
  renderNav();
  renderView();
}

function connect() {
  const conn = $("connection");
  const es = new EventSource("/api/shell/events");
  es.addEventListener("plugins", (e) => apply(JSON.parse(e.data).plugins));
  es.addEventListener("open", () => {
    conn.dataset.opens = String(Number(conn.dataset.opens ?? 0) + 1); // reconnects (e.g. after a plugin host restart)
    conn.dataset.state = "open";
    conn.textContent = "live";
  });
  es.addEventListener("error", () => {
    conn.dataset.state = es.readyState === EventSource.CLOSED ? "closed" : "connecting";
    conn.textContent = es.readyState === EventSource.CLOSED ? "offline" : "reconnecting…";
  });
}

function onNavKey(e) {
  const links = [...$("plugins").querySelectorAll("a")];
  const i = links.indexOf(document.activeElement);
  if (i < 0) return;
  const to = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: links.length - 1 }[e.key];
  if (to === undefined) return;
  e.preventDefault();
  const next = links[(to + links.length) % links.length];
  for (const a of links) a.tabIndex = a === next ? 0 : -1;
  next.focus();
}

function effectiveTheme() {
  const set = document.documentElement.dataset.theme;
  if (set === "light" || set === "dark") return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function renderThemeButton() {
  const dark = effectiveTheme() === "dark";
  const b = $("theme");
  b.setAttribute("aria-pressed", String(dark));
  b.textContent = dark ? "Light" : "Dark";
  b.title = dark ? "switch to the light theme" : "switch to the dark theme";
}

function initTheme() {
  const saved = localStorage.getItem(THEME_KEY);
  if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;
  renderThemeButton();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", renderThemeButton);
  $("theme").addEventListener("click", () => {
    const next = effectiveTheme() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    localStorage.setItem(THEME_KEY, next);
    renderThemeButton();
  });
}

$("plugins").addEventListener("keydown", onNavKey);
// Opening a plugin from the keyboard moves the focus to it (its title), as a page load would.
$("plugins").addEventListener("click", (e) => {
  if (e.detail === 0 && e.target.closest("a")) requestAnimationFrame(() => $("view-title").focus());
});
addEventListener("hashchange", () => {
  renderNav();
  renderView();
});
initTheme();
connect();
