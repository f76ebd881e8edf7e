/// <reference lib="dom" />
/**
 * `@hecate/sdk/ui`: what a plugin's web UI needs to appear in the daemon's app shell (`GET /` on the plugin port).
 *
 * A plugin declares `ui: { element, module }` in its manifest; `module` (inside its static dir) is an ES module whose
 * DEFAULT EXPORT is the element's class. The shell imports it, registers the class under a tag of its choosing
 * (`element`, or a versioned variant after an upgrade: custom elements cannot be redefined), and mounts it with
 * `api-base` / `plugin-name` / `plugin-version` attributes. Container plugins' UIs run in a sandboxed iframe.
 *
 * This file is plain, dependency-free, browser-safe JavaScript once compiled: the shell serves it to browsers as the
 * import-map target of `@hecate/sdk/ui`, so a plugin's module can `import { HecateElement } from "@hecate/sdk/ui"`
 * without a build step. It imports nothing at run time (types only), and loads in Node too (the base class falls
 * back to an empty class). The manifest rule for `ui.element` is `isValidElementName` of the contract.
 */

export type { PluginUi, ShellPlugin } from "./contract.js";

/** The attributes the shell sets on a mounted element. */
export const UI_ATTRIBUTES = ["api-base", "plugin-name", "plugin-version"] as const;

const Base = (globalThis.HTMLElement ?? class {}) as typeof HTMLElement;

/**
 * A small base class for a plugin's element: `apiBase` (the shell's `api-base` attribute, or `/plugin/{name}/api`
 * when the element is used on the plugin's own page), `api()` for JSON calls to it, `render()` called when connected
 * and whenever a shell attribute changes, and an open shadow root.
 */
export class HecateElement extends Base {
  static get observedAttributes(): string[] {
    return [...UI_ATTRIBUTES];
  }

  /** The open shadow root the element renders into. */
  readonly root: ShadowRoot;

  /**
   * What `api()` calls instead of `fetch`, when set. In a sandboxed frame (container plugins) the shell sets it to
   * its bridge: the frame's opaque origin has no other way to the plugin's API.
   */
  apiFetch?: (input: string, init?: RequestInit) => Promise<Response>;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: "open" });
  }

  /** `/plugin/{name}/api`, from the `api-base` attribute (set by the shell). */
  get apiBase(): string {
    return (this.getAttribute("api-base") ?? "").replace(/\/+$/, "");
  }

  set apiBase(value: string) {
    this.setAttribute("api-base", value);
  }

  get pluginName(): string {
    return this.getAttribute("plugin-name") ?? "";
  }

  get pluginVersion(): string {
    return this.getAttribute("plugin-version") ?? "";
  }

  /**
   * `fetch(apiBase + path)` with JSON in and out: an object `body` is sent as JSON; a non-2xx answer throws an Error
   * carrying the daemon's `{ error: { code, message } }`; 204 resolves to undefined.
   */
  async api<T = unknown>(path: string, init: Omit<RequestInit, "body"> & { body?: unknown } = {}): Promise<T> {
    const headers = new Headers(init.headers);
    let body = init.body as BodyInit | undefined;
    if (init.body !== undefined && typeof init.body !== "string" && !(init.body instanceof FormData)) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(init.body);
    }
    const res = await (this.apiFetch ?? fetch)(this.apiBase + path, { ...init, headers, body });
    const text = await res.text();
    const data = text ? JSON.parse(text) : undefined;
    if (!res.ok) {
      const e = data?.error;
      throw Object.assign(new Error(e?.message ?? `${res.status} ${res.statusText}`), {
        status: res.status,
        code: e?.code,
      });
    }
    return data as T;
  }

  connectedCallback(): void {
    this.render();
  }

  attributeChangedCallback(): void {
    if (this.isConnected) this.render();
  }

  /** Override: draw into `this.root`. */
  render(): void {}
}

/**
 * Registers `cls` under `name` unless that name is taken (for a plugin's own standalone page; the shell registers
 * the module's default export itself). Returns the class registered under `name`.
 */
export function defineElement(name: string, cls: CustomElementConstructor): CustomElementConstructor {
  const existing = customElements.get(name);
  if (existing) return existing;
  customElements.define(name, cls);
  return cls;
}
