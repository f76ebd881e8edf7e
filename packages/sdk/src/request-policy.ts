/**
 * The request rules shared by the daemon's router (which enforces them before a plugin sees a request) and the SDK
 * (route validation at load, `validate`'s JSON body check): which content types count as JSON or multipart, and what
 * a valid route CORS policy / request options look like.
 */
import type { CorsPolicy, HttpMethod } from "./contract.js";

const METHODS: readonly HttpMethod[] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const JSON_TYPE = /^application\/([\w.+-]*\+)?json\s*(;|$)/i;
const MULTIPART_TYPE = /^multipart\/form-data\s*(;|$)/i;
/** An HTTP header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** `application/json` or `application/*+json`, with or without parameters. */
export function isJsonContentType(type: string | undefined): boolean {
  return type !== undefined && JSON_TYPE.test(type);
}

/** `multipart/form-data` (with its boundary parameter). */
export function isMultipartContentType(type: string | undefined): boolean {
  return type !== undefined && MULTIPART_TYPE.test(type);
}

/** True for a serialised origin such as `https://app.example:8443` (scheme, host, optional port; nothing else). */
function isOrigin(value: unknown): boolean {
  if (typeof value !== "string") return false;
  try {
    const u = new URL(value);
    return (u.protocol === "http:" || u.protocol === "https:") && u.origin === value;
  } catch {
    return false;
  }
}

/** What is wrong with a CORS policy, or undefined when it is valid. */
export function corsPolicyProblem(value: unknown): string | undefined {
  if (!value || typeof value !== "object" || Array.isArray(value)) return "cors must be an object";
  const p = value as Partial<CorsPolicy> & Record<string, unknown>;
  for (const k of Object.keys(p))
    if (k !== "origins" && k !== "credentials" && k !== "methods" && k !== "headers") return `cors.${k} is unknown`;
  if (p.origins !== "*") {
    if (!Array.isArray(p.origins) || p.origins.length === 0)
      return 'cors.origins must be "*" or a non-empty array of origins';
    const bad = p.origins.find((o) => !isOrigin(o));
    if (bad !== undefined)
      return `cors.origins: ${JSON.stringify(bad)} is not an origin (scheme://host[:port], no path)`;
  }
  if (p.credentials !== undefined && typeof p.credentials !== "boolean") return "cors.credentials must be a boolean";
  if (p.credentials && p.origins === "*") return 'cors.credentials needs an explicit origins list, not "*"';
  if (p.methods !== undefined && (!Array.isArray(p.methods) || p.methods.some((m) => !METHODS.includes(m))))
    return `cors.methods must be an array of ${METHODS.join(", ")}`;
  if (p.headers !== undefined && (!Array.isArray(p.headers) || p.headers.some((h) => !TOKEN.test(String(h)))))
    return "cors.headers must be an array of header names";
  return undefined;
}

/** What is wrong with a route's request options (`cors`, `multipart`), or undefined. */
export function requestOptionsProblem(r: { cors?: unknown; multipart?: unknown }): string | undefined {
  if (r.multipart !== undefined && typeof r.multipart !== "boolean") return "multipart must be a boolean";
  return r.cors === undefined ? undefined : corsPolicyProblem(r.cors);
}
