/**
 * Handler deadlines and reply size caps, with a real daemon, real plugin-host processes and real HTTP:
 * - past its deadline a request gets 504 `handler_timeout` from the host's main thread (even from a worker wedged
 *   in a busy loop) and the handler's `req.signal` aborts with a TimeoutError; a route's own `timeoutMs` overrides
 *   the default, the operator's cap bounds both (`0` included), `0` without a cap is no deadline, and a streamed
 *   reply whose head went out is not cut;
 * - a non-streamed body above the cap (a 300 MB string, which aborted the whole plugin-host process before, bytes,
 *   an object's JSON, a multi-byte string) is a 502 `reply_too_large` with a plugin log line, and the host process
 *   stays the same; a streamed reply above the cap goes through whole.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  buildPackage,
  spawnDaemon,
  startTestDaemon,
  type TestDaemon,
  unixRequest,
  until,
} from "../lifecycle/helpers.js";

const MiB = 1024 * 1024;

const extra = `
import { Readable } from "node:stream";
let dataDir;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Records how the request's signal ended (the test reads the file): "TimeoutError: ..." or nothing. */
async function nap(req) {
  const tag = req.query.tag ?? "none";
  req.signal.addEventListener("abort", () =>
    writeFileSync(join(dataDir, "abort-" + tag + ".txt"), req.signal.reason.name + ": " + req.signal.reason.message));
  await sleep(Number(req.params.ms));
  return { slept: Number(req.params.ms) };
}
function chunks(n, size, gapMs) {
  return Readable.from((async function* () {
    for (let i = 0; i < n; i++) {
      if (gapMs) await sleep(gapMs);
      yield new Uint8Array(size).fill(97);
    }
  })());
}
`;

const routes = `
{ method: "GET", path: "/sleep/:ms", handler: nap },
{ method: "GET", path: "/own/:ms", timeoutMs: 1500, handler: nap },
{ method: "GET", path: "/huge/:ms", timeoutMs: 60000, handler: nap },
{ method: "GET", path: "/none/:ms", timeoutMs: 0, handler: nap },
{ method: "GET", path: "/busy", handler: () => { const end = Date.now() + 1200; while (Date.now() < end); return { ok: 1 }; } },
{ method: "GET", path: "/slow-stream", handler: () => ({ stream: chunks(8, 1000, 100) }) },
{ method: "GET", path: "/big-string", timeoutMs: 0, handler: () => "x".repeat(300 * 1024 * 1024) },
{ method: "GET", path: "/big-bytes", timeoutMs: 0, handler: () => new Uint8Array(64 * 1024 * 1024 + 1) },
{ method: "GET", path: "/big-object", timeoutMs: 0, handler: () => ({ rows: new Array(700000).fill("y".repeat(100)) }) },
{ method: "GET", path: "/text/:n", timeoutMs: 0, handler: (req) => "\\u00e9".repeat(Number(req.params.n)) },
{ method: "GET", path: "/ascii/:n", timeoutMs: 0, handler: (req) => "z".repeat(Number(req.params.n)) },
{ method: "GET", path: "/big-stream", timeoutMs: 0, handler: () => ({ stream: chunks(80, 1024 * 1024, 0) }) },
`;

async function installAndServe(d: TestDaemon, archive: string): Promise<void> {
  const r = await d.api("POST", "/admin/api/plugins", {
    body: readFileSync(archive),
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201, await r.text());
  await until(async () => (await fetch(`${d.url}/plugin/dl/api/who`)).ok, 20_000, "plugin dl serving");
}

/** GET a plugin route: status, JSON error code (if any), body length, elapsed ms. */
async function get(d: TestDaemon, path: string): Promise<{ status: number; code?: string; bytes: number; ms: number }> {
  const t = performance.now();
  const r = await fetch(`${d.url}/plugin/dl/api${path}`);
  const body = Buffer.from(await r.arrayBuffer());
  const ms = performance.now() - t;
  let code: string | undefined;
  if (r.headers.get("content-type")?.startsWith("application/json") && body.length < 4096)
    code = JSON.parse(body.toString("utf8")).error?.code;
  return { status: r.status, code, bytes: body.length, ms };
}

function abortRecord(d: TestDaemon, tag: string): Promise<string> {
  const f = join(d.home, "plugins", "dl", "data", `abort-${tag}.txt`);
  return until(
    () => {
      try {
        return readFileSync(f, "utf8");
      } catch {
        return "";
      }
    },
    5000,
    `abort record ${tag}`,
  );
}

const pkgDir = mkdtempSync(join(tmpdir(), "hecate-deadline-"));
const archive = buildPackage(pkgDir, {
  name: "dl",
  version: "1.0.0",
  extra,
  init: "dataDir = config.dataDir;",
  routes,
});
after(() => rmSync(pkgDir, { recursive: true, force: true }));

describe("operator cap set: deadline default 400 ms, cap 1000 ms; reply cap 1 MB", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({
      runtime: { handlerTimeoutMs: 400, maxHandlerTimeoutMs: 1000, maxReplyBytes: 1_000_000 },
    });
    await installAndServe(d, await archive);
  });
  after(() => d.stop());

  test("past the default deadline: 504 handler_timeout, and req.signal aborts with a TimeoutError", async () => {
    const r = await get(d, "/sleep/3000?tag=default");
    assert.equal(r.status, 504);
    assert.equal(r.code, "handler_timeout");
    assert.ok(r.ms >= 390 && r.ms < 1500, `504 after ${r.ms.toFixed(0)} ms`);
    assert.match(await abortRecord(d, "default"), /^TimeoutError: handler deadline of 400 ms passed/);
    const log = await (await d.api("GET", "/admin/api/plugins/dl/logs")).text();
    assert.match(log, /no reply within 400 ms: 504/);
  });

  test("in time: 200, and the signal never aborts", async () => {
    const r = await get(d, "/sleep/50?tag=quick");
    assert.equal(r.status, 200);
    await new Promise((res) => setTimeout(res, 500));
    assert.throws(() => readFileSync(join(d.home, "plugins", "dl", "data", "abort-quick.txt")));
  });

  test("a route's own timeoutMs overrides the default", async () => {
    assert.equal((await get(d, "/own/700")).status, 200); // past the 400 ms default, within its 1500 ms (cap 1000)
  });

  test("the operator's cap bounds a route's longer deadline, and its 0 (none)", async () => {
    const huge = await get(d, "/huge/3000?tag=huge");
    assert.equal(huge.status, 504);
    assert.ok(huge.ms >= 990 && huge.ms < 2500, `capped 504 after ${huge.ms.toFixed(0)} ms`);
    assert.match(await abortRecord(d, "huge"), /deadline of 1000 ms/);
    const none = await get(d, "/none/3000?tag=none-capped");
    assert.equal(none.status, 504);
    assert.ok(none.ms >= 990 && none.ms < 2500, `capped 504 after ${none.ms.toFixed(0)} ms`);
  });

  test("a worker wedged in a busy loop still gets its 504 on time (enforced on the main thread)", async () => {
    const r = await get(d, "/busy");
    assert.equal(r.status, 504);
    assert.ok(r.ms < 1100, `504 after ${r.ms.toFixed(0)} ms while the worker was busy for 1200 ms`);
    await new Promise((res) => setTimeout(res, 1000)); // the loop ends, the worker serves again
    assert.equal((await get(d, "/sleep/10")).status, 200);
  });

  test("the configured reply cap counts UTF-8 bytes", async () => {
    const ok = await get(d, "/text/400000"); // 800 000 bytes
    assert.equal(ok.status, 200);
    assert.equal(ok.bytes, 800_000);
    const over = await get(d, "/text/600000"); // 1 200 000 bytes, 600 000 units
    assert.equal(over.status, 502);
    assert.equal(over.code, "reply_too_large");
  });

  test("a streamed reply whose head went out is not cut by the deadline", async () => {
    const r = await get(d, "/slow-stream"); // 8 chunks 100 ms apart: ~800 ms, past the 400 ms default
    assert.equal(r.status, 200);
    assert.equal(r.bytes, 8000);
    assert.ok(r.ms > 600);
  });
});

describe("no operator cap: deadline default 300 ms; reply cap the default 64 MiB", () => {
  let d: TestDaemon;
  before(async () => {
    d = await startTestDaemon({ runtime: { handlerTimeoutMs: 300 } });
    await installAndServe(d, await archive);
  });
  after(() => d.stop());

  test("timeoutMs 0 is no deadline", async () => {
    assert.equal((await get(d, "/none/900")).status, 200);
    assert.equal((await get(d, "/sleep/900")).status, 504);
  });

  test("a 300 MB string reply is a 502 reply_too_large, logged; the plugin host stays up", async () => {
    const pid = d.hosts.pids()[1];
    assert.ok(pid);
    const r = await get(d, "/big-string");
    assert.equal(r.status, 502);
    assert.equal(r.code, "reply_too_large");
    assert.equal(d.hosts.pids()[1], pid);
    const log = await (await d.api("GET", "/admin/api/plugins/dl/logs")).text();
    assert.match(log, /reply to GET \/big-string refused \(502\)/);
    assert.equal((await get(d, "/sleep/1")).status, 200);
  });

  test("bytes and an object's JSON above 64 MiB are 502s too; an ASCII string under the cap is whole", async () => {
    const pid = d.hosts.pids()[1];
    const bytes = await get(d, "/big-bytes");
    assert.equal(bytes.status, 502);
    assert.equal(bytes.code, "reply_too_large");
    const obj = await get(d, "/big-object"); // ~72 MB of JSON
    assert.equal(obj.status, 502);
    assert.equal(obj.code, "reply_too_large");
    const ascii = await get(d, `/ascii/${30 * MiB}`); // between cap/3 and cap units: measured, not refused
    assert.equal(ascii.status, 200);
    assert.equal(ascii.bytes, 30 * MiB);
    assert.equal(d.hosts.pids()[1], pid);
  });

  test("a streamed reply above the cap goes through whole", async () => {
    const r = await get(d, "/big-stream");
    assert.equal(r.status, 200);
    assert.equal(r.bytes, 80 * MiB);
  });
});

describe("the operator's env (main.js)", () => {
  test("HECATE_HANDLER_TIMEOUT_MS / HECATE_MAX_REPLY_BYTES reach the plugin host; a bad value exits 2", async () => {
    const home = mkdtempSync(join(pkgDir, "home-"));
    const bad = spawnDaemon(home, { HECATE_MAX_REPLY_BYTES: "64MB" });
    assert.equal((await bad.exited).code, 2);
    assert.match(bad.output(), /HECATE_MAX_REPLY_BYTES must be a non-negative integer/);
    const d = spawnDaemon(home, { HECATE_HANDLER_TIMEOUT_MS: "300", HECATE_MAX_REPLY_BYTES: "1000000" });
    try {
      const url = await d.url;
      const r = await unixRequest(d.socketPath, "POST", "/admin/api/plugins", readFileSync(await archive), {
        "content-type": "application/gzip",
      });
      assert.equal(r.status, 201, r.body);
      await until(async () => (await fetch(`${url}/plugin/dl/api/who`)).ok, 20_000, "plugin dl serving");
      assert.equal((await fetch(`${url}/plugin/dl/api/sleep/900`)).status, 504);
      assert.equal((await fetch(`${url}/plugin/dl/api/text/600000`)).status, 502);
    } finally {
      d.child.kill("SIGTERM");
      await d.exited;
    }
  });
});
