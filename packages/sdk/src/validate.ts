/**
 * Request validation: JSON bodies, query strings and route params checked against a JSON Schema (ajv 8 +
 * ajv-formats, compiled once per schema object and cached) or any Standard Schema (zod 3.25+/4, valibot, arktype...).
 *
 *   const Task = z.object({ title: z.string().min(1), due: z.string().date().optional() });
 *   { method: "POST", path: "/tasks", handler: validate.validated({ body: Task }, async (req, { body }) => ...) }
 *   // body is typed from the schema (z.infer<typeof Task>)
 *
 * A failure throws `HttpError` 400 `validation_failed` whose `details` lists every problem found, in all three
 * locations at once: `[{ location: "body" | "query" | "params", path: "/items/0/name", message }]` (`path` is a JSON
 * Pointer into the value, "" for the value itself). A body over the limit (default 1 MiB) is refused with 413
 * `payload_too_large` before it is read whole; a body that is not JSON gets 400 `invalid_json`, a body with a
 * non-JSON content type or none at all 415 `unsupported_media_type`.
 *
 * Query values arrive as strings (or string arrays when repeated). With a JSON Schema they are coerced to the schema's
 * types (`"5"` -> 5, `"true"` -> true, one value -> `[value]` for arrays) and defaults are filled in; with a Standard
 * Schema, coerce in the schema (e.g. `z.coerce.number()`).
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import type { Handler, HandlerResult, PluginRequest } from "./contract.js";
import { HttpError } from "./contract.js";
import { isJsonContentType } from "./request-policy.js";

/** A JSON Schema (draft-07 / 2019-09 subset ajv 8 accepts by default) as a plain object or boolean. */
export type JsonSchema = Record<string, unknown> | boolean;
export type Schema = StandardSchemaV1 | JsonSchema;

/** What a validated value is typed as: the Standard Schema's output, or `unknown` for a JSON Schema. */
export type Infer<S> = S extends StandardSchemaV1 ? StandardSchemaV1.InferOutput<S> : unknown;

export type Location = "body" | "query" | "params";

export interface ValidationIssue {
  location: Location;
  /** JSON Pointer into the validated value ("" = the value itself). */
  path: string;
  message: string;
}

export const DEFAULT_BODY_LIMIT = 1024 * 1024;

// Two instances: a JSON body is taken as sent; query/params are strings by nature, so they are coerced.
const bodyAjv = addFormats.default(new Ajv({ allErrors: true, useDefaults: true, strict: false }));
const stringsAjv = addFormats.default(
  new Ajv({ allErrors: true, useDefaults: true, coerceTypes: "array", strict: false }),
);
const compiled = { body: new WeakMap<object, ValidateFunction>(), strings: new WeakMap<object, ValidateFunction>() };
const booleanSchemas = new Map<string, ValidateFunction>();
let compilations = 0;

/** How many JSON Schemas were compiled so far (each schema object once per body / query+params use). */
export function compiledSchemas(): number {
  return compilations;
}

function isStandard(schema: Schema): schema is StandardSchemaV1 {
  return typeof schema === "object" && schema !== null && "~standard" in schema;
}

/** The compiled ajv function for a schema, compiled on first use and cached by object identity. */
function compile(schema: JsonSchema, location: Location): ValidateFunction {
  const ajv = location === "body" ? bodyAjv : stringsAjv;
  if (typeof schema === "boolean") {
    const key = `${location === "body"}:${schema}`;
    let fn = booleanSchemas.get(key);
    if (!fn) {
      fn = ajv.compile(schema);
      compilations++;
      booleanSchemas.set(key, fn);
    }
    return fn;
  }
  const cache = location === "body" ? compiled.body : compiled.strings;
  let fn = cache.get(schema);
  if (!fn) {
    fn = ajv.compile(schema);
    compilations++;
    cache.set(schema, fn);
  }
  return fn;
}

function pointerEscape(segment: string): string {
  return segment.replace(/~/g, "~0").replace(/\//g, "~1");
}

function ajvIssue(location: Location, e: ErrorObject): ValidationIssue {
  let path = e.instancePath;
  // Errors about a property the object lacks (or must not have) point at that property, not at the object.
  if (e.keyword === "required") path += `/${pointerEscape(String(e.params.missingProperty))}`;
  else if (e.keyword === "additionalProperties") path += `/${pointerEscape(String(e.params.additionalProperty))}`;
  return { location, path, message: e.message ?? e.keyword };
}

function standardPath(path: StandardSchemaV1.Issue["path"]): string {
  if (!path) return "";
  return path
    .map((seg) => `/${pointerEscape(String(typeof seg === "object" && seg !== null ? seg.key : seg))}`)
    .join("");
}

/**
 * Checks `value` against `schema`; returns the (possibly transformed / coerced / defaulted) value or the issues.
 * Never throws for invalid input.
 */
export async function check<S extends Schema>(
  schema: S,
  value: unknown,
  location: Location = "body",
): Promise<{ value: Infer<S>; issues?: undefined } | { value?: undefined; issues: ValidationIssue[] }> {
  if (isStandard(schema)) {
    const result = await schema["~standard"].validate(value);
    if (result.issues)
      return {
        issues: result.issues.map((i) => ({ location, path: standardPath(i.path), message: i.message })),
      };
    return { value: result.value as Infer<S> };
  }
  // ajv coerces and fills defaults in place: work on a copy so the request's own objects stay as sent.
  const copy = value === undefined ? undefined : structuredClone(value);
  const fn = compile(schema, location);
  if (fn(copy)) return { value: copy as Infer<S> };
  return { issues: (fn.errors ?? []).map((e) => ajvIssue(location, e)) };
}

function fail(issues: ValidationIssue[]): never {
  const first = issues[0];
  const where = `${first.location}${first.path}`;
  throw new HttpError(
    400,
    "validation_failed",
    `request validation failed: ${where} ${first.message}${issues.length > 1 ? ` (and ${issues.length - 1} more)` : ""}`,
    issues,
  );
}

export interface BodyOptions {
  /** Largest body accepted, in bytes (default 1 MiB); larger -> 413 `payload_too_large`. */
  limit?: number;
}

/**
 * Reads the JSON body (bounded) without validating it: 415 for a body without a JSON content type (none at all
 * included: a cross-site `no-cors` fetch can send a Blob without one), 400 for bad JSON.
 */
async function readJson(req: PluginRequest, limit: number): Promise<unknown> {
  const header = req.headers["content-type"];
  const type = typeof header === "string" ? header : undefined;
  if (header !== undefined && !isJsonContentType(type)) throw unsupported(String(header));
  const text = await req.text(limit);
  if (text.length > 0 && type === undefined) throw unsupported(undefined);
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, "invalid_json", `request body is not valid JSON: ${(err as Error).message}`);
  }
}

function unsupported(type: string | undefined): HttpError {
  const got = type === undefined ? "no content-type" : `content-type ${type}`;
  return new HttpError(415, "unsupported_media_type", `expected a JSON body (application/json), got ${got}`);
}

function missingBody(): ValidationIssue {
  return { location: "body", path: "", message: "a JSON body is required" };
}

/** Parses and validates the JSON body; throws 400 / 413 / 415 `HttpError`s. */
export async function body<S extends Schema>(
  req: PluginRequest,
  schema: S,
  options: BodyOptions = {},
): Promise<Infer<S>> {
  const value = await readJson(req, options.limit ?? DEFAULT_BODY_LIMIT);
  const r =
    value === undefined && !isStandard(schema) ? { issues: [missingBody()] } : await check(schema, value, "body");
  if (r.issues) fail(r.issues);
  return r.value as Infer<S>;
}

/** Validates (and with a JSON Schema coerces) the query string; throws a 400 `HttpError`. */
export async function query<S extends Schema>(req: PluginRequest, schema: S): Promise<Infer<S>> {
  const r = await check(schema, req.query, "query");
  if (r.issues) fail(r.issues);
  return r.value as Infer<S>;
}

/** Validates (and with a JSON Schema coerces) the route params; throws a 400 `HttpError`. */
export async function params<S extends Schema>(req: PluginRequest, schema: S): Promise<Infer<S>> {
  const r = await check(schema, req.params, "params");
  if (r.issues) fail(r.issues);
  return r.value as Infer<S>;
}

export interface ValidatedSchemas<
  B extends Schema | undefined,
  Q extends Schema | undefined,
  P extends Schema | undefined,
> {
  body?: B;
  query?: Q;
  params?: P;
  /** Largest JSON body accepted, in bytes (default 1 MiB). */
  bodyLimit?: number;
}

type Out<S> = S extends Schema ? Infer<S> : undefined;

export interface ValidatedInput<B, Q, P> {
  body: Out<B>;
  query: Out<Q>;
  params: Out<P>;
}

/**
 * Builds a handler that validates params, query and body first (all problems reported together) and then calls
 * `handler` with the validated, typed values.
 */
export function validated<
  B extends Schema | undefined = undefined,
  Q extends Schema | undefined = undefined,
  P extends Schema | undefined = undefined,
>(
  schemas: ValidatedSchemas<B, Q, P>,
  handler: (req: PluginRequest, input: ValidatedInput<B, Q, P>) => HandlerResult | Promise<HandlerResult>,
): Handler {
  return async (req) => {
    const issues: ValidationIssue[] = [];
    const input = { body: undefined, query: undefined, params: undefined } as Record<Location, unknown>;
    const run = async (location: Location, schema: Schema | undefined, read: () => Promise<unknown> | unknown) => {
      if (schema === undefined) return;
      const value = await read();
      if (location === "body" && value === undefined && !isStandard(schema)) {
        issues.push(missingBody());
        return;
      }
      const r = await check(schema, value, location);
      if (r.issues) issues.push(...r.issues);
      else input[location] = r.value;
    };
    await run("params", schemas.params, () => req.params);
    await run("query", schemas.query, () => req.query);
    await run("body", schemas.body, () => readJson(req, schemas.bodyLimit ?? DEFAULT_BODY_LIMIT));
    if (issues.length) fail(issues);
    return handler(req, input as unknown as ValidatedInput<B, Q, P>);
  };
}
