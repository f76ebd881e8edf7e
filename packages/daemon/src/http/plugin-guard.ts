/**
 * CSRF rules for plugin API routes (`/plugin/{name}/api/...`), enforced by the router before a request reaches a
 * worker or a container, so every plugin gets them whatever it does itself:
 * - a state-changing request (not GET, HEAD, OPTIONS) from a foreign origin (an `Origin` other than the Host it was
 *   sent to, or no Origin with `Sec-Fetch-Site: cross-site`) -> 403 `origin_forbidden`, unless the route's CORS
 *   policy lists that origin (then the reply carries the `Access-Control-*` headers, and the daemon answers the
 *   route's preflight `OPTIONS` itself);
 * - a state-changing request with a body must be JSON (`application/json`, `application/*+json`), or
 *   `multipart/form-data` where the route declares it -> else 415 `unsupported_media_type`. A browser can send a
 *   text/plain, urlencoded or multipart body (or a Blob with no type) cross-site without a preflight; it can never
 *   send JSON that way.
 * Bodyless requests without a foreign Origin pass (a plain `POST /tasks/1/complete` from the plugin's own page).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { CorsPolicy } from "@hecate/sdk";
import { corsPolicyProblem, isJsonContentType, isMultipartContentType } from "@hecate/sdk/request-policy";
import { validateRoutePath } from "@hecate/sdk/runtime/dispatcher";
import FindMyWay from "find-my-way";
import { sendJsonError } from "./static.js";

/** A plugin route's request rules, as the plugin declared them (worker route announcement, container manifest). */
export interface RoutePolicy {
  cors?: CorsPolicy;
  /** true: the route accepts `multipart/form-data`; a list: only these route patterns (relative to the API prefix). */
  multipart?: boolean | string[];
}

interface CompiledCors {
  any: boolean;
  origins: ReadonlySet<string>;
  credentials: boolean;
  methods: ReadonlySet<string>;
  /** `Access-Control-Allow-Methods` / `-Headers` of the preflight reply. */
  allowMethods: string;
  allowHeaders: string;
}

/** The compiled rules kept in the routing snapshot (one per plugin route). */
export interface Guard {
  readonly cors?: CompiledCors;
  readonly multipart: boolean | ((path: string) => boolean);
}

const NO_RULES: Guard = { multipart: false };
const PREFLIGHT_MAX_AGE_S = "600";

/** Compiles a route's policy; throws an Error saying what is wrong (the router turns it into a RouteError). */
export function compileGuard(policy: RoutePolicy, routeMethods: readonly string[]): Guard {
  if (policy.cors === undefined && !policy.multipart) return NO_RULES;
  let cors: CompiledCors | undefined;
  if (policy.cors !== undefined) {
    const bad = corsPolicyProblem(policy.cors);
    if (bad) throw new Error(bad);
    const c = policy.cors;
    const methods = c.methods ?? routeMethods;
    cors = {
      any: c.origins === "*",
      origins: new Set(c.origins === "*" ? [] : c.origins),
      credentials: c.credentials === true,
      // GET routes answer HEAD too (see Router.build)
      methods: new Set(methods.includes("GET") ? [...methods, "HEAD"] : methods),
      allowMethods: methods.join(", "),
      allowHeaders: ["content-type", ...(c.headers ?? [])].join(", "),
    };
  }
  return { cors, multipart: compileMultipart(policy.multipart) };
}

function compileMultipart(m: RoutePolicy["multipart"]): Guard["multipart"] {
  if (m === undefined || typeof m === "boolean") return m === true;
  if (!Array.isArray(m)) throw new Error("multipart paths must be an array of route patterns");
  // find-my-way, the router's own matcher: a pattern here means exactly what it means as a route.
  const tree = FindMyWay({ ignoreTrailingSlash: false, caseSensitive: true });
  for (const p of m) {
    const bad = validateRoutePath(p);
    if (bad) throw new Error(`multipart path ${JSON.stringify(p)} ${bad}`);
    tree.on("POST", p, () => {});
  }
  return (path) => tree.find("POST", path) !== null;
}

/**
 * False when a browser says the request comes from another origin than the Host it was sent to: its `Origin` is
 * neither that host nor in `allowed`, or it has no Origin and `Sec-Fetch-Site: cross-site`. Non-browser clients send
 * neither header and pass (no ambient credentials to abuse).
 */
export function originAllowed(req: IncomingMessage, allowed?: string[] | "*"): boolean {
  if (allowed === "*") return true;
  const origin = req.headers.origin;
  if (origin === undefined) return req.headers["sec-fetch-site"] !== "cross-site";
  if (allowed?.includes(origin)) return true;
  try {
    return new URL(origin).host === req.headers.host;
  } catch {
    return false; // "null" (sandboxed frames, opaque redirects) or garbage
  }
}

function corsAllows(cors: CompiledCors, origin: string | undefined, method: string | undefined): boolean {
  if (origin === undefined || method === undefined || !cors.methods.has(method)) return false;
  return cors.any || cors.origins.has(origin);
}

function setCorsHeaders(res: ServerResponse, cors: CompiledCors, origin: string): void {
  if (cors.any) res.setHeader("access-control-allow-origin", "*");
  else {
    res.setHeader("access-control-allow-origin", origin);
    res.setHeader("vary", "Origin");
  }
  if (cors.credentials) res.setHeader("access-control-allow-credentials", "true");
}

/** Applies the rules to a request of a plugin API route; false = refused (already answered 403 / 415). */
export function admit(req: IncomingMessage, res: ServerResponse, guard: Guard, path: string): boolean {
  const method = req.method;
  const safe = method === "GET" || method === "HEAD" || method === "OPTIONS";
  if (safe && guard.cors === undefined) return true; // the common case: one comparison
  const h = req.headers;
  if (!originAllowed(req)) {
    if (guard.cors && h.origin !== undefined && corsAllows(guard.cors, h.origin, method))
      setCorsHeaders(res, guard.cors, h.origin);
    else if (!safe) {
      const from = h.origin === undefined ? "a cross-site page" : `origin ${h.origin}`;
      sendJsonError(res, 403, "origin_forbidden", `${method} from ${from} refused: the route allows no other origin`);
      return false;
    }
  }
  if (safe) return true;
  const len = h["content-length"];
  if (h["transfer-encoding"] === undefined && (len === undefined || len === "0")) return true;
  const type = h["content-type"];
  if (isJsonContentType(type)) return true;
  const m = guard.multipart;
  if (isMultipartContentType(type) && (m === true || (m !== false && m(path)))) return true;
  const got = type === undefined ? "no content-type" : `content-type ${type}`;
  const want = m === false ? "application/json" : "application/json or multipart/form-data";
  sendJsonError(res, 415, "unsupported_media_type", `${method} bodies must be ${want}, got ${got}`);
  return false;
}

/**
 * Answers the CORS preflight (`OPTIONS` + `Access-Control-Request-Method`) of a route with a policy: 204 with the
 * allowed methods and headers, or 403 for an origin / method the policy does not list. False when the route has no
 * policy (the request goes on to the plugin's own OPTIONS route, if any).
 */
export function answerPreflight(req: IncomingMessage, res: ServerResponse, guard: Guard): boolean {
  const cors = guard.cors;
  if (!cors) return false;
  const origin = req.headers.origin;
  const want = req.headers["access-control-request-method"];
  if (!corsAllows(cors, origin, want)) {
    sendJsonError(res, 403, "cors_forbidden", `cross-origin ${want} from ${origin ?? "(no origin)"} is not allowed`);
    return true;
  }
  setCorsHeaders(res, cors, origin!);
  res.setHeader("access-control-allow-methods", cors.allowMethods);
  res.setHeader("access-control-allow-headers", cors.allowHeaders);
  res.setHeader("access-control-max-age", PREFLIGHT_MAX_AGE_S);
  res.writeHead(204).end();
  return true;
}
