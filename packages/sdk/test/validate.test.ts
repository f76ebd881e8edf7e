import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { z } from "zod";
import * as z4 from "zod/v4";
import type { PluginModule } from "../src/contract.js";
import { createTestHarness, type TestHarness } from "../src/runtime/harness.js";
import * as validate from "../src/validate.js";

const TaskJson = {
  type: "object",
  properties: {
    title: { type: "string", minLength: 1 },
    email: { type: "string", format: "email" },
    priority: { type: "integer", minimum: 1, maximum: 5, default: 3 },
  },
  required: ["title"],
  additionalProperties: false,
} as const;

const ListQuery = {
  type: "object",
  properties: {
    limit: { type: "integer", minimum: 1, default: 20 },
    tag: { type: "array", items: { type: "string" } },
    done: { type: "boolean" },
  },
  additionalProperties: false,
};

const IdParams = { type: "object", properties: { id: { type: "string", pattern: "^[0-9]+$" } }, required: ["id"] };

const Order = z.object({
  customer: z.string().min(1),
  items: z.array(z.object({ name: z.string(), qty: z.number().int().positive() })).min(1),
  note: z
    .string()
    .optional()
    .transform((s) => s?.trim()),
});
const OrderQuery = z.object({ page: z.coerce.number().int().min(1).default(1) });
const Signup = z4.object({ user: z4.object({ email: z4.email(), age: z4.number().min(18) }) });

const plugin: PluginModule = {
  manifest: () => ({ name: "val", version: "1.0.0" }),
  init() {},
  routes: () => [
    {
      method: "POST",
      path: "/tasks",
      handler: validate.validated({ body: TaskJson }, (_req, { body }) => ({ task: body })),
    },
    {
      method: "GET",
      path: "/tasks",
      handler: validate.validated({ query: ListQuery }, (req, { query }) => ({ query, raw: req.query })),
    },
    {
      method: "PUT",
      path: "/lists/:id/orders",
      handler: validate.validated(
        { params: IdParams, query: OrderQuery, body: Order, bodyLimit: 64 * 1024 },
        (_req, { body, query, params }) => {
          // Compile-time check of Standard Schema inference: these assignments fail to build if the types are wrong.
          const customer: string = body.customer;
          const qty: number = body.items[0].qty;
          const page: number = query.page;
          return { customer, qty, page, note: body.note ?? null, params };
        },
      ),
    },
    {
      method: "POST",
      path: "/signup",
      handler: async (req) => {
        const input = await validate.body(req, Signup, { limit: 1024 });
        const age: number = input.user.age;
        return { age };
      },
    },
  ],
};

let h: TestHarness;
let url: string;
before(async () => {
  h = await createTestHarness(plugin);
  url = (await h.listen()).url;
});
after(() => h.close());

/** A JSON reply: an error envelope or the route's own fields. */
type Body = { error: { code: string; message: string; details: unknown } } & Record<string, unknown>;

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Body };
}

test("JSON Schema body: valid input gets defaults, invalid input lists every problem with its path", async () => {
  const ok = await call("POST", "/tasks", { title: "write tests", email: "a@b.example" });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body.task, { title: "write tests", email: "a@b.example", priority: 3 });

  const bad = await call("POST", "/tasks", { email: "not-an-email", priority: 9, extra: 1 });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, "validation_failed");
  const details = bad.body.error.details as validate.ValidationIssue[];
  const paths = details.map((d) => `${d.location}:${d.path}`).sort();
  assert.deepEqual(paths, ["body:/email", "body:/extra", "body:/priority", "body:/title"]);
  assert.ok(details.every((d) => typeof d.message === "string" && d.message.length > 0));
  assert.match(details.find((d) => d.path === "/email")!.message, /email/);
});

test("body errors: missing body, invalid JSON, wrong content type, and size limits (413)", async () => {
  const missing = await call("POST", "/tasks");
  assert.equal(missing.status, 400);
  assert.deepEqual(missing.body.error.details, [{ location: "body", path: "", message: "a JSON body is required" }]);
  const broken = await call("POST", "/tasks", "{not json");
  assert.equal(broken.status, 400);
  assert.equal(broken.body.error.code, "invalid_json");
  const text = await call("POST", "/tasks", undefined, { "content-type": "text/plain" });
  assert.equal(text.status, 415);
  assert.equal(text.body.error.code, "unsupported_media_type");
  // A body without any content type (what a cross-site no-cors fetch of a Blob sends) is not taken for JSON.
  const untyped = await fetch(`${url}/tasks`, { method: "POST", body: new Blob(['{"title":"csrf"}']) });
  assert.equal(untyped.status, 415);
  assert.match(((await untyped.json()) as Body).error.message, /got no content-type/);

  // Declared length over the limit: refused before reading.
  const big = { customer: "x".repeat(70 * 1024), items: [{ name: "a", qty: 1 }] };
  const declared = await call("PUT", "/lists/1/orders", big);
  assert.equal(declared.status, 413);
  assert.equal(declared.body.error.code, "payload_too_large");
  // Chunked (no Content-Length): counted while streaming.
  const chunks = [Buffer.from('{"customer":"'), Buffer.alloc(70 * 1024, 0x61), Buffer.from('"}')];
  const res = await fetch(`${url}/lists/1/orders`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: new ReadableStream({
      pull(c) {
        const next = chunks.shift();
        if (next) c.enqueue(next);
        else c.close();
      },
    }),
    duplex: "half",
  } as RequestInit);
  assert.equal(res.status, 413);
  assert.equal(((await res.json()) as Body).error.code, "payload_too_large");
  // validate.body() with its own limit.
  const over = await call("POST", "/signup", { user: { email: "a@b.example", age: 20, pad: "p".repeat(2000) } });
  assert.equal(over.status, 413);
});

test("JSON Schema query: strings coerced to the schema's types, single values to arrays, defaults", async () => {
  const ok = await call("GET", "/tasks?limit=5&tag=a&done=true");
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body.query, { limit: 5, tag: ["a"], done: true });
  assert.deepEqual(ok.body.raw, { limit: "5", tag: "a", done: "true" }, "the request's own query is left as sent");
  const two = await call("GET", "/tasks?tag=a&tag=b");
  assert.deepEqual(two.body.query, { limit: 20, tag: ["a", "b"] });
  const bad = await call("GET", "/tasks?limit=zero&done=maybe&nope=1");
  assert.equal(bad.status, 400);
  const paths = (bad.body.error.details as validate.ValidationIssue[]).map((d) => `${d.location}:${d.path}`).sort();
  assert.deepEqual(paths, ["query:/done", "query:/limit", "query:/nope"]);
  // Keys named like Object.prototype members are plain keys.
  const proto = await call("GET", "/tasks?constructor=1&__proto__=x");
  assert.equal(proto.status, 400);
  const protoPaths = (proto.body.error.details as validate.ValidationIssue[]).map((d) => d.path).sort();
  assert.deepEqual(protoPaths, ["/__proto__", "/constructor"]);
});

test("Standard Schema (zod 3): typed output with transforms; params, query and body issues reported together", async () => {
  const ok = await call("PUT", "/lists/42/orders?page=3", {
    customer: "ann",
    items: [{ name: "tea", qty: 2 }],
    note: "  fragile  ",
  });
  assert.equal(ok.status, 200);
  assert.deepEqual(ok.body, { customer: "ann", qty: 2, page: 3, note: "fragile", params: { id: "42" } });

  const bad = await call("PUT", "/lists/abc/orders?page=0", { customer: "", items: [{ name: "tea", qty: -1 }, {}] });
  assert.equal(bad.status, 400);
  const details = bad.body.error.details as validate.ValidationIssue[];
  const paths = details.map((d) => `${d.location}:${d.path}`);
  assert.deepEqual(paths.slice(0, 2), ["params:/id", "query:/page"], "params first, then query, then body");
  for (const p of ["body:/customer", "body:/items/0/qty", "body:/items/1/name", "body:/items/1/qty"])
    assert.ok(paths.includes(p), `${p} in ${paths.join(", ")}`);
  assert.match(bad.body.error.message, /^request validation failed: params\/id .* \(and \d+ more\)$/);
});

test("Standard Schema (zod 4) through validate.body()", async () => {
  const ok = await call("POST", "/signup", { user: { email: "a@b.example", age: 30 } });
  assert.deepEqual(ok.body, { age: 30 });
  const bad = await call("POST", "/signup", { user: { email: "nope", age: 12 } });
  assert.equal(bad.status, 400);
  const paths = (bad.body.error.details as validate.ValidationIssue[]).map((d) => d.path).sort();
  assert.deepEqual(paths, ["/user/age", "/user/email"]);
});

test("JSON Schemas are compiled once and cached; check() reports without throwing", async () => {
  const schema = { type: "object", properties: { "a/b": { type: "number" } }, required: ["a~c"] };
  const before = validate.compiledSchemas();
  for (let i = 0; i < 100; i++) await validate.check(schema, { "a/b": i, "a~c": 1 });
  assert.equal(validate.compiledSchemas(), before + 1);
  const r = await validate.check(schema, { "a/b": "x" });
  assert.deepEqual(r.issues?.map((i) => i.path).sort(), ["/a~0c", "/a~1b"], "JSON Pointer escaping of ~ and /");
  // The HTTP routes above compiled each of their schemas once, however many requests they served.
  const n = validate.compiledSchemas();
  await call("POST", "/tasks", { title: "again" });
  await call("GET", "/tasks?limit=2");
  assert.equal(validate.compiledSchemas(), n);
});
