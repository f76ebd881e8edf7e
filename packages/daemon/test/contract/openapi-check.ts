/**
 * Checks one HTTP exchange of the admin API against packages/daemon/openapi.json: the status is documented for the
 * operation, the content type is one the document lists for that status, and the body matches its schema (JSON
 * bodies whole; each `data:` line of an event stream against the media type's `x-data-schema`). A method the path
 * does not serve must answer 405 with an `Allow` header listing the documented methods; an undocumented path 404.
 * Every error answer is the document's JSON Error.
 *
 * Schemas are checked by ajv's JSON Schema 2020-12 dialect (the dialect of OpenAPI 3.1) with ajv-formats.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

export const OPENAPI_FILE = fileURLToPath(new URL("../../../openapi.json", import.meta.url));

/** One answer as a test saw it. `body` is null when it was not received whole (an aborted stream). */
export interface Exchange {
  method: string;
  /** Request target as sent: path plus query. */
  path: string;
  status: number;
  /** Lower-case names. */
  headers: Record<string, string | undefined>;
  body: string | null;
}

type Json = Record<string, unknown>;

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** The path-item key of `pathname`: exact segments beat `{param}` ones; null when no path of the document fits. */
export function matchPath(paths: string[], pathname: string): string | null {
  const segs = pathname.split("/");
  let best: string | null = null;
  let bestScore = -1;
  for (const p of paths) {
    const t = p.split("/");
    if (t.length !== segs.length) continue;
    let score = 0;
    let ok = true;
    for (let i = 0; i < t.length && ok; i++) {
      // A parameter matches an empty segment too: the router's `:name` does (`/plugins//activate` is plugin "").
      // Not one that is no valid percent-encoding (`%ff`): no route takes it, the path is unknown (404).
      if (/^\{[^}]+\}$/.test(t[i])) {
        ok = decodes(segs[i]);
        continue;
      }
      if (t[i] === segs[i]) score++;
      else ok = false;
    }
    if (ok && score > bestScore) {
      best = p;
      bestScore = score;
    }
  }
  return best;
}

function decodes(segment: string): boolean {
  try {
    decodeURIComponent(segment);
    return true;
  } catch {
    return false;
  }
}

/** JSON Pointer token escaping (RFC 6901). */
const esc = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");

export class OpenApiContract {
  readonly doc: Json;
  private readonly ajv: Ajv2020;
  private readonly validators = new Map<string, ValidateFunction>();

  constructor(doc: Json = JSON.parse(readFileSync(OPENAPI_FILE, "utf8")) as Json) {
    this.doc = doc;
    // strict: unknown keywords in a schema are mistakes of the document, except OpenAPI's own (3.1 § 4.8.24).
    // optimize: false: compiling every response schema up front takes ~0.25 s instead of ~0.6 s (checks stay fast).
    this.ajv = new Ajv2020({
      strict: true,
      allowUnionTypes: true,
      discriminator: true,
      verbose: true, // errors carry the offending value
      code: { optimize: false },
    });
    addFormats.default(this.ajv);
    this.ajv.addVocabulary(["xml", "externalDocs", "example"]);
    // The document's paths and components are registered under its file name so that a schema's
    // `#/components/...` refs resolve; those two members (and the SSE data schema extension) are not keywords.
    for (const keyword of ["paths", "components", "x-data-schema"]) this.ajv.addKeyword({ keyword });
    this.ajv.addSchema(
      { $id: "openapi.json", paths: doc.paths, components: doc.components },
      undefined,
      undefined,
      false,
    );
    this.compileAll();
  }

  /** Compiles every response schema now: a broken schema fails here, and checks during timed tests stay cheap. */
  private compileAll(): void {
    this.validator("/components/schemas/Error");
    for (const [key, item] of Object.entries(this.paths))
      for (const m of METHODS) {
        const responses = (item[m] as Json | undefined)?.responses as Record<string, Json> | undefined;
        for (const code of Object.keys(responses ?? {})) {
          const r = responses![code];
          const where = r.$ref ? (r.$ref as string).slice(1) : `/paths/${esc(key)}/${m}/responses/${esc(code)}`;
          for (const [media, mt] of Object.entries((this.resolve(r).content ?? {}) as Record<string, Json>)) {
            if (mt.schema) this.validator(`${where}/content/${esc(media)}/schema`);
            if (mt["x-data-schema"]) this.validator(`${where}/content/${esc(media)}/x-data-schema`);
          }
        }
      }
  }

  private get paths(): Record<string, Json> {
    return this.doc.paths as Record<string, Json>;
  }

  /** The documented methods of a path item, as an `Allow` header lists them (HEAD wherever GET). */
  allowedMethods(pathKey: string): string[] {
    const item = this.paths[pathKey];
    const out = METHODS.filter((m) => item[m]).map((m) => m.toUpperCase());
    if (out.includes("GET") && !out.includes("HEAD")) out.push("HEAD");
    return out.sort();
  }

  private resolve(node: Json): Json {
    let n = node;
    while (typeof n.$ref === "string") {
      const parts = (n.$ref as string).replace(/^#\//, "").split("/");
      let cur: unknown = this.doc;
      for (const p of parts) cur = (cur as Json)[p.replace(/~1/g, "/").replace(/~0/g, "~")];
      n = cur as Json;
    }
    return n;
  }

  private validator(pointer: string): ValidateFunction {
    let v = this.validators.get(pointer);
    if (!v) {
      v = this.ajv.compile({ $ref: `openapi.json#${pointer}` });
      this.validators.set(pointer, v);
    }
    return v;
  }

  private validate(pointer: string, value: unknown, what: string): string[] {
    const v = this.validator(pointer);
    if (v(value)) return [];
    return (v.errors ?? []).map(
      (e) =>
        `${what}${e.instancePath || ""}: ${e.message} (${e.schemaPath}), got ${JSON.stringify(e.data)?.slice(0, 120)}`,
    );
  }

  /** Every way `x` disagrees with the document (empty: it agrees). */
  check(x: Exchange): string[] {
    const q = x.path.indexOf("?");
    const pathname = q < 0 ? x.path : x.path.slice(0, q);
    const method = x.method.toUpperCase();
    const key = matchPath(Object.keys(this.paths), pathname);
    if (!key) {
      // the admin guard (401 Unauthorized, 403 Forbidden) runs before routing under /admin/
      const guarded = pathname.startsWith("/admin/") && (x.status === 401 || x.status === 403);
      if (x.status !== 404 && !guarded) return [`undocumented path answered ${x.status} (expected a 404 JSON error)`];
      return this.checkJsonError(x, "#/components/schemas/Error");
    }
    const item = this.paths[key];
    const op = item[method === "HEAD" && !item.head ? "get" : method.toLowerCase()] as Json | undefined;
    if (!op || !METHODS.includes(method.toLowerCase())) {
      const allow = this.allowedMethods(key);
      const problems: string[] = [];
      if (x.status !== 405) return [`${method} is not documented for ${key}: expected 405, got ${x.status}`];
      const got = (x.headers.allow ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
        .sort();
      if (got.join(", ") !== allow.join(", "))
        problems.push(`405 Allow is "${x.headers.allow ?? ""}", the document's methods are "${allow.join(", ")}"`);
      return [...problems, ...this.checkJsonError(x, "#/components/schemas/Error")];
    }
    const responses = op.responses as Record<string, Json>;
    const s = String(x.status);
    const code =
      s in responses ? s : `${s[0]}XX` in responses ? `${s[0]}XX` : "default" in responses ? "default" : null;
    if (!code)
      return [`status ${s} is not documented for ${method} ${key} (documented: ${Object.keys(responses).join(", ")})`];
    const response = this.resolve(responses[code]);
    const where = responses[code].$ref
      ? (responses[code].$ref as string).slice(1)
      : `/paths/${esc(key)}/${method === "HEAD" ? "get" : method.toLowerCase()}/responses/${esc(code)}`;
    if (method === "HEAD") return [];
    const content = response.content as Record<string, Json> | undefined;
    const type = (x.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (!content) {
      if (x.body) return [`${s} of ${method} ${key} documents no body, got ${x.body.length} bytes (${type})`];
      return [];
    }
    const media = type in content ? type : `${type.split("/")[0]}/*` in content ? `${type.split("/")[0]}/*` : "*/*";
    if (!(media in content))
      return [`${s} of ${method} ${key}: content-type "${type}" not documented (${Object.keys(content).join(", ")})`];
    const pointer = `${where}/content/${esc(media)}`;
    if (x.body === null) return [];
    if (media === "application/json" || media.endsWith("+json")) {
      let value: unknown;
      try {
        value = JSON.parse(x.body);
      } catch {
        return [`${s} of ${method} ${key}: body is not JSON: ${x.body.slice(0, 80)}`];
      }
      return content[media].schema ? this.validate(`${pointer}/schema`, value, "body") : [];
    }
    if (media === "text/event-stream" && content[media]["x-data-schema"])
      return this.checkEvents(x.body, `${pointer}/x-data-schema`);
    return [];
  }

  /** Each complete message's `data` (JSON) against the stream's data schema. */
  checkEvents(text: string, pointer: string): string[] {
    const problems: string[] = [];
    const messages = text.split(/\r?\n\r?\n/);
    messages.pop(); // the last one may be incomplete
    for (const m of messages) {
      const data = m
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""));
      if (data.length === 0) continue; // a comment (": ping")
      let value: unknown;
      try {
        value = JSON.parse(data.join("\n"));
      } catch {
        problems.push(`event data is not JSON: ${data.join("\n").slice(0, 80)}`);
        continue;
      }
      problems.push(...this.validate(pointer, value, "event data"));
    }
    return problems;
  }

  private checkJsonError(x: Exchange, schema: string): string[] {
    if (x.method.toUpperCase() === "HEAD" || x.body === null) return [];
    const type = (x.headers["content-type"] ?? "").split(";")[0].trim().toLowerCase();
    if (type !== "application/json") return [`${x.status} is not a JSON error (content-type "${type}")`];
    let value: unknown;
    try {
      value = JSON.parse(x.body);
    } catch {
      return [`${x.status} error body is not JSON: ${x.body.slice(0, 80)}`];
    }
    return this.validate(schema.slice(1), value, "error body");
  }
}
