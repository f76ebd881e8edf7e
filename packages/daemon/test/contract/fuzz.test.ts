/**
 * Property-based exploration of the admin API against openapi.json (fast-check, fixed seed, a few seconds): random
 * methods, paths (documented templates and anything else), queries, bodies, content types and credentials; every
 * answer must be what the document says (contract/openapi-check.ts). Malformed requests that node:http cannot parse
 * (raw non-ASCII bytes, oversized headers) get a JSON error on both listeners.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { type Exchange, OpenApiContract } from "./openapi-check.js";

const SEED = 13;
const TIME_LIMIT_MS = 4000;

let d: TestDaemon;
let contract: OpenApiContract;
/** A real package of plugin "probe": the random bodies include it (installs, upgrades that succeed). */
let archive: Buffer;
before(async () => {
  d = await startTestDaemon();
  contract = new OpenApiContract();
  archive = readFileSync(await buildPackage(d.work, { name: "probe", version: "1.0.0" }));
  const r = await d.api("POST", "/admin/api/plugins", {
    body: archive,
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201);
});
after(() => d.stop());

interface Req {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: Buffer;
}

/** Sends `r` as is (node:http, no normalisation of the path); an event stream is read for 100 ms then closed. */
function send(r: Req): Promise<Exchange> {
  const url = new URL(d.adminUrl);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method: r.method, path: r.path, headers: r.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        const done = (whole: boolean) =>
          resolve({
            method: r.method,
            path: r.path,
            status: res.statusCode ?? 0,
            headers: Object.fromEntries(
              Object.entries(res.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : v]),
            ),
            body:
              whole || String(res.headers["content-type"]).startsWith("text/event-stream")
                ? Buffer.concat(chunks).toString("utf8")
                : null,
          });
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => done(true));
        res.on("error", () => done(false));
        // an event stream is read for 100 ms; anything else that has not ended after 10 s is judged by its head
        const stream = String(res.headers["content-type"]).startsWith("text/event-stream");
        setTimeout(
          () => {
            done(false);
            req.destroy();
          },
          stream ? 100 : 10_000,
        ).unref();
      },
    );
    req.on("error", reject);
    req.end(r.body);
  });
}

const segment = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9._~-]{0,12}$/),
  fc.constantFrom("..", ".", "%2e%2e", "%2F", "%00", "%ff", "api", "plugins", "probe", "activate", "events", "*", ""),
  fc.string({ maxLength: 8 }).map(encodeURIComponent),
);
const name = fc.oneof(fc.constantFrom("probe", "nope", "Probe", "a".repeat(70)), segment);

function fuzzRequests(templates: string[]) {
  const documented = fc
    .tuple(fc.constantFrom(...templates), name)
    .map(([t, n]) => t.replace("{name}", n).replace("{file}", n));
  const elsewhere = fc.array(segment, { maxLength: 5 }).map((s) => `/${s.join("/")}`);
  const underApi = fc.array(segment, { maxLength: 4 }).map((s) => `/admin/api/${s.join("/")}`);
  const query = fc.option(
    fc
      .array(
        fc.tuple(
          fc.constantFrom("wait", "purge", "limit", "tail", "follow", "token", "x"),
          fc.oneof(fc.constantFrom("none", "loaded", "1", "0", "-1", "501", "yes", ""), segment),
        ),
        { minLength: 1, maxLength: 3 },
      )
      .map((kv) => `?${kv.map(([k, v]) => `${k}=${v}`).join("&")}`),
    { nil: "" },
  );
  const body = fc.option(
    fc.oneof(
      fc.json().map((j) => Buffer.from(j)),
      fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)),
      fc.constantFrom(Buffer.from('{"path":"/nonexistent/p.tar.gz"}'), Buffer.from('{"path":"relative.tar.gz"}')),
      fc.constant(archive),
    ),
    { nil: undefined },
  );
  return fc
    .record({
      method: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom("GET", "POST", "DELETE") },
        fc.constantFrom("HEAD", "PUT", "PATCH", "OPTIONS"),
      ),
      path: fc.oneof({ weight: 4, arbitrary: documented }, elsewhere, underApi),
      query,
      body,
      type: fc.constantFrom(
        undefined,
        "application/json",
        "application/gzip",
        "application/octet-stream",
        "text/plain",
      ),
      auth: fc.constantFrom("token", "token", "token", "none", "wrong"),
    })
    .map(({ method, path, query, body, type, auth }): Req => {
      const headers: Record<string, string> = { host: "127.0.0.1", connection: "close" };
      if (auth === "token") headers.authorization = `Bearer ${d.token}`;
      if (auth === "wrong") headers.authorization = "Bearer wrong";
      if (type) headers["content-type"] = type;
      const withBody = body !== undefined && method !== "GET" && method !== "HEAD";
      // framed by content-length: node sends a DELETE/OPTIONS body unframed otherwise (a malformed request)
      if (withBody) headers["content-length"] = String(body.length);
      return { method, path: path + query, headers, body: withBody ? body : undefined };
    });
}

test("random requests to the admin API: every answer is the one openapi.json documents", async () => {
  let runs = 0;
  let slowest = 0;
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(fuzzRequests(Object.keys(contract.doc.paths as object)), async (r) => {
      runs++;
      const t = performance.now();
      const x = await send(r);
      slowest = Math.max(slowest, performance.now() - t);
      statuses.set(x.status, (statuses.get(x.status) ?? 0) + 1);
      assert.deepEqual(contract.check(x), [], `${r.method} ${r.path} -> ${x.status} ${x.body?.slice(0, 200)}`);
    }),
    {
      seed: SEED,
      numRuns: 1000,
      interruptAfterTimeLimit: TIME_LIMIT_MS,
      markInterruptAsFailure: false,
      includeErrorInReport: true,
    },
  );
  console.log(
    `# ${runs} random requests (slowest ${slowest.toFixed(0)} ms), statuses ${JSON.stringify(Object.fromEntries(statuses))}`,
  );
  assert.ok(runs >= 20, `only ${runs} runs`);
});

/** Writes `head` on a raw connection and parses the answer (status, headers, body) once the server closes. */
function raw(port: number, head: Buffer): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("error", reject);
    s.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const end = text.indexOf("\r\n\r\n");
      const [statusLine, ...lines] = text.slice(0, end).split("\r\n");
      const headers: Record<string, string> = {};
      for (const l of lines) headers[l.slice(0, l.indexOf(":")).toLowerCase()] = l.slice(l.indexOf(":") + 1).trim();
      resolve({ status: Number(statusLine.split(" ")[1]), headers, body: text.slice(end + 4) });
    });
    s.end(head);
  });
}

function assertJsonError(r: { status: number; headers: Record<string, string>; body: string }, status: number): void {
  assert.equal(r.status, status, r.body);
  assert.match(r.headers["content-type"], /^application\/json/);
  assert.equal(Number(r.headers["content-length"]), Buffer.byteLength(r.body, "latin1"));
  const e = JSON.parse(r.body).error;
  assert.equal(typeof e.code, "string");
  assert.equal(typeof e.message, "string");
}

test("requests node:http cannot parse get a JSON error on both listeners (400; 431 for oversized headers)", async () => {
  const ports = [Number(new URL(d.adminUrl).port), Number(new URL(d.url).port)];
  // raw bytes outside ASCII (and controls) in the request target
  const bytes = fc
    .tuple(fc.uint8Array({ maxLength: 16 }), fc.integer({ min: 0x80, max: 0xff }), fc.uint8Array({ maxLength: 16 }))
    .map(([a, b, c]) => Buffer.from([...a, b, ...c].filter((x) => x !== 0x20 && x !== 0x0d && x !== 0x0a)));
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(bytes, fc.constantFrom(...ports), async (junk, port) => {
      runs++;
      const head = Buffer.concat([
        Buffer.from("GET /admin/api/"),
        junk,
        Buffer.from(" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
      ]);
      const r = await raw(port, head);
      assertJsonError(r, 400);
      assert.equal(JSON.parse(r.body).error.code, "bad_request");
    }),
    { seed: SEED, numRuns: 60, interruptAfterTimeLimit: 2000, markInterruptAsFailure: false },
  );
  assert.ok(runs >= 10, `only ${runs} runs`);
  for (const port of ports) {
    const big = await raw(
      port,
      Buffer.from(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${"a".repeat(20_000)}\r\n\r\n`),
    );
    assertJsonError(big, 431);
    assert.equal(JSON.parse(big.body).error.code, "headers_too_large");
  }
  // the admin listener's anti-framing headers are on these answers too
  const admin = await raw(ports[0], Buffer.from("GET /admin/api/\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "latin1"));
  assert.equal(admin.headers["x-frame-options"], "DENY");
  // keep-alive: the first request's answer is complete on the wire, then the malformed second one gets its JSON 400
  const pipelined = await raw(
    ports[0],
    Buffer.from(
      "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /\xff HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
      "latin1",
    ),
  );
  assert.equal(pipelined.status, 200);
  const [health, second] = pipelined.body.split(/(?=HTTP\/1\.1 )/);
  assert.equal(JSON.parse(health.slice(0, health.lastIndexOf("}") + 1)).status, "ok");
  assert.match(second, /^HTTP\/1\.1 400 Bad Request\r\n/);
  assert.equal(JSON.parse(second.slice(second.indexOf("\r\n\r\n") + 4)).error.code, "bad_request");
});
