/**
 * In-process reply framing, end to end in a real daemon with real plugin packages, seen by a raw pipelining client:
 * the daemon owns Content-Length / Transfer-Encoding, so nothing a plugin replies can make the client read the next
 * reply on the connection (another plugin's) wrongly — a streamed body past its declared length is cut and the
 * connection closed, a short one too, a declared length without a body is not sent, 1xx and invalid statuses and
 * headers node:http refuses become 502 `bad_reply`; every one of them leaves a line in the plugin's log. A plugin's
 * `Set-Cookie` for the daemon's cookies is dropped.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { type PipedRequest, pipeline } from "./pipeline.js";

const INJECTED = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nINJECTED";

const EVIL_ROUTES = `
  { method: "GET", path: "/long", handler: () => ({ headers: { "content-length": "5" },
      stream: Readable.from([Buffer.from("hello"), Buffer.from(${JSON.stringify(INJECTED)})]) }) },
  { method: "GET", path: "/long-one-chunk", handler: () => ({ headers: { "Content-Length": "5" },
      stream: Readable.from([Buffer.from("hello" + ${JSON.stringify(INJECTED)})]) }) },
  { method: "GET", path: "/short", handler: () => ({ headers: { "content-length": "100" },
      stream: Readable.from([Buffer.from("0123456789")]) }) },
  { method: "GET", path: "/exact", handler: () => ({ headers: { "content-length": "10" },
      stream: Readable.from([Buffer.from("01234"), Buffer.from("56789")]) }) },
  { method: "GET", path: "/bad-length", handler: () => ({ headers: { "content-length": "5, 5" },
      stream: Readable.from([Buffer.from("hello")]) }) },
  { method: "GET", path: "/te", handler: () => ({ headers: { "transfer-encoding": "chunked", "content-length": "3" },
      body: "hello" }) },
  { method: "GET", path: "/no-body", handler: () => ({ status: 200, headers: { "content-length": "100" } }) },
  { method: "GET", path: "/empty-204", handler: () => ({ status: 204, headers: { "content-length": "50" } }) },
  { method: "GET", path: "/page", handler: () => "hello" },
  { method: "HEAD", path: "/declared", handler: () => ({ status: 200, headers: { "content-length": "100" } }) },
  { method: "GET", path: "/status/:s", handler: (req) => ({ status: Number(req.params.s), body: "x" }) },
  { method: "GET", path: "/bad-name", handler: () => ({ headers: { "x a": "1" }, body: "x" }) },
  { method: "GET", path: "/bad-value", handler: () => ({ headers: { "x-a": "1\\r\\n\\r\\n" + ${JSON.stringify(INJECTED)} }, body: "x" }) },
  { method: "GET", path: "/cookies", handler: () => ({ headers: { "set-cookie": [
      "hecate_admin=stolen; Path=/admin/api", "__Host-hecate_admin=x; Path=/; Secure", "theme=dark; Path=/"] }, body: "ok" }) },
  { method: "GET", path: "/cookie", handler: () => ({ headers: { "Set-Cookie": "HECATE_ADMIN=x" }, body: "ok" }) },
`;

let d: TestDaemon;
let port: number;

before(async () => {
  d = await startTestDaemon();
  port = Number(new URL(d.url).port);
  for (const p of [
    { name: "evil", version: "1.0.0", extra: `import { Readable } from "node:stream";`, routes: EVIL_ROUTES },
    { name: "good", version: "1.0.0", routes: `{ method: "GET", path: "/hello", handler: () => "good reply" },` },
  ]) {
    const r = await d.api("POST", "/admin/api/plugins", {
      body: readFileSync(await buildPackage(d.work, p)),
      headers: { "content-type": "application/gzip" },
    });
    assert.equal(r.status, 201, await r.text());
  }
});
after(() => d?.stop());

const GOOD: PipedRequest = { method: "GET", path: "/plugin/good/api/hello" };
const evil = (path: string, method = "GET"): PipedRequest => ({ method, path: `/plugin/evil/api${path}` });

async function evilLog(): Promise<string> {
  const r = await d.api("GET", "/admin/api/plugins/evil/logs?tail=500");
  return ((await r.json()).logs as { msg: string }[]).map((l) => l.msg).join("\n");
}

test("a streamed body longer than its content-length is cut there and the connection closed", async () => {
  for (const path of ["/long", "/long-one-chunk"]) {
    const out = await pipeline(port, [evil(path), GOOD]);
    const text = out.raw.toString("latin1");
    assert.ok(out.closedByServer, `${path}: the connection stayed open`);
    assert.ok(!text.includes("INJECTED"), `${path}: bytes past the declared length reached the client:\n${text}`);
    assert.ok(!text.includes("good reply"), `${path}: a reply followed a broken one on the same connection`);
    // What arrived (if anything did before the close) is a prefix of the one legitimate reply.
    assert.ok(text.split("HTTP/1.1 ").length <= 2, text);
    assert.match(text, /^(|HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 5\r\n[\s\S]*)$/i);
    assert.ok(out.replies.length <= 1 && (out.replies[0]?.body.toString() ?? "hello") === "hello", text);
  }
  assert.match(await evilLog(), /reply to GET \/plugin\/evil\/api\/long: connection closed: streamed more than/);
});

test("a streamed body shorter than its content-length closes the connection", async () => {
  const out = await pipeline(port, [evil("/short"), GOOD]);
  assert.ok(out.closedByServer);
  assert.equal(out.replies.length, 0, "the client must not get a complete reply");
  assert.ok(!out.raw.toString("latin1").includes("good reply"));
  assert.match(await evilLog(), /\/short: connection closed: ended its body 90 bytes short of its content-length/);
  // The exact length streamed in two chunks is fine, and keeps the connection.
  const ok = await pipeline(port, [evil("/exact"), GOOD]);
  assert.equal(ok.closedByServer, false);
  assert.deepEqual(
    ok.replies.map((r) => [r.status, r.headers["content-length"], r.body.toString()]),
    [
      [200, "10", "0123456789"],
      [200, "10", "good reply"],
    ],
  );
});

test("a declared length without a body, and the plugin's Transfer-Encoding, are not sent", async () => {
  const out = await pipeline(port, [evil("/no-body"), evil("/te"), evil("/empty-204"), GOOD]);
  assert.equal(out.closedByServer, false);
  const [noBody, te, empty, good] = out.replies;
  assert.equal(noBody.headers["content-length"], "0");
  assert.equal(te.headers["content-length"], "5");
  assert.equal(te.headers["transfer-encoding"], undefined);
  assert.equal(te.body.toString(), "hello");
  assert.equal(empty.status, 204);
  assert.equal(empty.headers["content-length"], undefined);
  assert.equal(good.body.toString(), "good reply");
  assert.equal(out.rest.length, 0, "stray bytes after the replies");
});

test("HEAD replies keep the GET length and send no body", async () => {
  const out = await pipeline(port, [evil("/page", "HEAD"), evil("/declared", "HEAD"), GOOD]);
  assert.equal(out.closedByServer, false);
  assert.deepEqual(
    out.replies.map((r) => [r.status, r.headers["content-length"], r.body.toString()]),
    [
      [200, "5", ""],
      [200, "100", ""],
      [200, "10", "good reply"],
    ],
  );
  assert.equal(out.rest.length, 0);
});

test("1xx and invalid statuses, bad header names and values, a bad streamed length: 502 bad_reply", async () => {
  const cases = [
    "/status/100",
    "/status/101",
    "/status/103",
    "/status/199",
    "/status/600",
    "/status/42",
    "/status/200.5",
    "/bad-name",
    "/bad-value",
    "/bad-length",
  ];
  for (const path of cases) {
    const out = await pipeline(port, [evil(path), GOOD]);
    const text = out.raw.toString("latin1");
    assert.equal(out.closedByServer, false, path);
    assert.equal(out.replies.length, 2, `${path}:\n${text}`);
    const [bad, good] = out.replies;
    assert.equal(bad.status, 502, `${path} -> ${bad.status}`);
    assert.equal(JSON.parse(bad.body.toString()).error.code, "bad_reply", path);
    assert.equal(good.body.toString(), "good reply", path);
    assert.ok(!text.includes("INJECTED"), path);
  }
  const log = await evilLog();
  assert.match(log, /\/status\/100: refused \(502\): invalid status 100/);
  assert.match(log, /\/status\/101: refused \(502\): invalid status 101/);
  assert.match(log, /\/bad-name: refused \(502\): header refused/);
  assert.match(log, /\/bad-value: refused \(502\): header refused/);
  assert.match(log, /\/bad-length: refused \(502\): invalid content-length "5, 5"/);
  // The plugin is still up.
  assert.equal((await fetch(`${d.url}/plugin/evil/api/page`)).status, 200);
});

test("a plugin cannot set the daemon's cookies", async () => {
  const many = await fetch(`${d.url}/plugin/evil/api/cookies`);
  assert.deepEqual(many.headers.getSetCookie(), ["theme=dark; Path=/"]);
  const one = await fetch(`${d.url}/plugin/evil/api/cookie`);
  assert.deepEqual(one.headers.getSetCookie(), []);
  assert.equal(await one.text(), "ok");
  assert.match(await evilLog(), /\/cookie: dropped a daemon cookie/);
});
