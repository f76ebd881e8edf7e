// @ts-check
// The settings form of the admin page's plugin details: generated from the manifest's `settings` JSON Schema (its
// top-level properties: strings, numbers / integers, booleans, enums; other types as JSON text), saved through
// PUT /admin/api/plugins/{name}/settings. Secrets (`writeOnly`) are password inputs that only say "set" / "not set":
// their value is never sent to this page. Kept in its own module (and section) so the rest of the page stays apart.

/** @typedef {{type?:string|string[],enum?:unknown[],title?:string,description?:string,default?:unknown,writeOnly?:boolean,minimum?:number,maximum?:number}} Prop */
/** @typedef {{plugin:string,schema:{properties?:Record<string,Prop>,required?:string[]}|null,values:Record<string,unknown>,secrets:Record<string,{set:boolean}>,applied?:string}} SettingsView */

const APPLIED = {
  live: "saved, applied live",
  swap: "saved, applied by restarting the plugin (zero downtime)",
  none: "saved; the plugin gets them when it is next loaded",
  failed: "saved, but the plugin could not be restarted with them",
};

/**
 * Which plugin the form shows, whether the operator has edited it since (then it is not redrawn under them), and the
 * outcome of the last save (kept when a live update redraws the form).
 */
let shown = { name: "", dirty: false, status: "" };

/** @param {string} tag @param {Record<string,string>} [attrs] @param {(Node|string)[]} [children] */
function el(tag, attrs = {}, children = []) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** @param {Prop} p */
function kind(p) {
  if (p.writeOnly) return "secret";
  if (Array.isArray(p.enum)) return "enum";
  const t = Array.isArray(p.type) ? p.type.find((x) => x !== "null") : p.type;
  if (t === "boolean" || t === "integer" || t === "number" || t === "string") return t;
  return "json";
}

/**
 * Shows the settings of `name` in `container` (redrawn when another plugin is shown, when `force`, or when the
 * operator has not touched the form).
 * @param {HTMLElement} container @param {string} name
 * @param {(path: string, init?: RequestInit) => Promise<any>} api @param {{force?: boolean}} [opts]
 */
export async function showSettings(container, name, api, opts = {}) {
  if (shown.name === name && shown.dirty && !opts.force) return;
  const view = /** @type {SettingsView} */ (await api(`/plugins/${encodeURIComponent(name)}/settings`));
  shown = { name, dirty: false, status: shown.name === name ? shown.status : "" };
  draw(container, view, api);
}

/** @param {HTMLElement} container @param {SettingsView} view @param {(path: string, init?: RequestInit) => Promise<any>} api */
function draw(container, view, api) {
  const props = view.schema?.properties ?? {};
  const names = Object.keys(props);
  if (names.length === 0) {
    container.replaceChildren(el("p", { id: "settings-none" }, [`${view.plugin} declares no settings.`]));
    return;
  }
  const form = /** @type {HTMLFormElement} */ (el("form", { id: "settings-form", novalidate: "" }));
  /** Booleans the operator did not touch stay unset (the plugin keeps its default). */
  const touched = new Set();
  for (const key of names) form.append(field(key, /** @type {Prop} */ (props[key]), view, touched));
  const save = el("button", { type: "submit", id: "settings-save" }, ["Save settings"]);
  const out = el("span", { id: "settings-status", role: "status", "aria-live": "polite" }, [shown.status]);
  form.append(el("div", { class: "settings-actions" }, [save, out]));
  form.addEventListener("input", () => {
    shown.dirty = true;
    shown.status = "";
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = collect(form, names, props, view, touched);
    if (typeof body === "string") {
      out.textContent = body;
      out.className = "error";
      return;
    }
    for (const x of form.querySelectorAll("[data-error-for]")) x.textContent = "";
    /** @type {HTMLButtonElement} */ (save).disabled = true;
    out.className = "";
    out.textContent = "saving…";
    try {
      const next = /** @type {SettingsView} */ (
        await api(`/plugins/${encodeURIComponent(view.plugin)}/settings`, {
          method: "PUT",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
        })
      );
      shown.dirty = false;
      shown.status = APPLIED[/** @type {keyof typeof APPLIED} */ (next.applied ?? "none")] ?? "saved";
      draw(container, next, api);
    } catch (err) {
      const errors = /** @type {{details?: unknown}} */ (err).details;
      if (Array.isArray(errors))
        for (const d of errors) {
          const slot = form.querySelector(`[data-error-for="${CSS.escape(String(d.field))}"]`);
          if (slot) slot.textContent = d.message;
        }
      out.textContent = `not saved: ${/** @type {Error} */ (err).message}`;
      out.className = "error";
      /** @type {HTMLButtonElement} */ (save).disabled = false;
    }
  });
  container.replaceChildren(form);
}

/** @param {string} key @param {Prop} p @param {SettingsView} view @param {Set<string>} touched */
function field(key, p, view, touched) {
  const id = `setting-${key}`;
  const k = kind(p);
  const has = Object.hasOwn(view.values, key);
  const value = view.values[key];
  /** @type {HTMLElement} */
  let input;
  const extra = [];
  if (k === "boolean") {
    input = el("input", { type: "checkbox" });
    /** @type {HTMLInputElement} */ (input).checked = has ? value === true : p.default === true;
    input.addEventListener("change", () => touched.add(key));
  } else if (k === "enum") {
    input = el("select", {}, [
      el("option", { value: "" }, [`(not set${p.default !== undefined ? `: ${String(p.default)}` : ""})`]),
      ...(p.enum ?? []).map((v, i) => el("option", { value: String(i) }, [String(v)])),
    ]);
    const at = has ? (p.enum ?? []).findIndex((v) => JSON.stringify(v) === JSON.stringify(value)) : -1;
    /** @type {HTMLSelectElement} */ (input).value = at >= 0 ? String(at) : "";
  } else if (k === "secret") {
    const set = view.secrets[key]?.set === true;
    input = el("input", {
      type: "password",
      autocomplete: "new-password",
      placeholder: set ? "set (type to replace)" : "not set",
    });
    extra.push(
      el("span", { class: "secret-state", "data-secret-state": set ? "set" : "not set" }, [set ? "set" : "not set"]),
    );
    if (set)
      extra.push(el("label", { class: "clear" }, [el("input", { type: "checkbox", "data-clear": key }), " clear"]));
  } else {
    const numeric = k === "integer" || k === "number";
    input = el(
      k === "json" ? "textarea" : "input",
      numeric ? { type: "number", step: k === "integer" ? "1" : "any" } : { type: "text" },
    );
    if (numeric && p.minimum !== undefined) input.setAttribute("min", String(p.minimum));
    if (numeric && p.maximum !== undefined) input.setAttribute("max", String(p.maximum));
    /** @type {HTMLInputElement} */ (input).value = has ? (k === "json" ? JSON.stringify(value) : String(value)) : "";
    if (!has && p.default !== undefined) input.setAttribute("placeholder", `default: ${JSON.stringify(p.default)}`);
  }
  input.id = id;
  input.setAttribute("name", key);
  input.dataset.kind = k;
  const label = el("label", { for: id }, [p.title ?? key]);
  const help = p.description ? [el("small", {}, [p.description])] : [];
  return el("div", { class: "setting", "data-setting": key }, [
    label,
    input,
    ...extra,
    ...help,
    el("span", { class: "error", "data-error-for": key }),
  ]);
}

/**
 * The PUT body: changed fields in `values`, emptied fields (and cleared secrets) in `unset`. A string when a JSON
 * field does not parse.
 * @param {HTMLFormElement} form @param {string[]} names @param {Record<string, Prop>} props @param {SettingsView} view
 * @param {Set<string>} touched
 * @returns {{values: Record<string, unknown>, unset: string[]} | string}
 */
function collect(form, names, props, view, touched) {
  /** @type {Record<string, unknown>} */
  const values = {};
  /** @type {string[]} */
  const unset = [];
  for (const key of names) {
    const p = /** @type {Prop} */ (props[key]);
    const input = /** @type {HTMLInputElement} */ (form.querySelector(`[name="${CSS.escape(key)}"]`));
    const k = input.dataset.kind;
    const has = Object.hasOwn(view.values, key);
    if (k === "boolean") {
      if (has || touched.has(key)) values[key] = input.checked;
    } else if (k === "secret") {
      const clear = /** @type {HTMLInputElement | null} */ (form.querySelector(`[data-clear="${CSS.escape(key)}"]`));
      if (input.value !== "") values[key] = input.value;
      else if (clear?.checked) unset.push(key);
    } else if (input.value === "") {
      if (has) unset.push(key);
    } else if (k === "enum") {
      values[key] = (p.enum ?? [])[Number(input.value)];
    } else if (k === "integer" || k === "number") {
      values[key] = Number(input.value);
    } else if (k === "json") {
      try {
        values[key] = JSON.parse(input.value);
      } catch {
        return `${key}: not valid JSON`;
      }
    } else values[key] = input.value;
  }
  return { values, unset };
}
