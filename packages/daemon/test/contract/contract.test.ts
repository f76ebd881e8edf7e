/**
 * The contract check itself: it accepts the daemon's real answers, it rejects them against a deliberately wrong
 * document (wrong schema, undocumented status, wrong Allow, bad event data), and a disagreement seen by the
 * recorder fails the node:test test that made the call.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { buildPackage, startTestDaemon, type TestDaemon } from "../lifecycle/helpers.js";
import { type Exchange, OPENAPI_FILE, OpenApiContract } from "./openapi-check.js";
import { ContractViolation, checkedCount, record } from "./recorder.js";

let d: TestDaemon;
before(async () => {
  d = await startTestDaemon();
  const archive = readFileSync(await buildPackage(d.work, { name: "probe", version: "1.0.0" }));
  const r = await d.api("POST", "/admin/api/plugins", {
    body: archive,
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201);
});
after(() => d.stop());

/** One real answer of the daemon, as the checker takes it. */
async function exchange(method: string, path: string, body?: string): Promise<Exchange> {
  const r = await d.api(method, path, body === undefined ? {} : { body, headers: { "content-type": "text/plain" } });
  return { method, path, status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() };
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  return env;
}

// biome-ignore lint/suspicious/noExplicitAny: the test edits arbitrary parts of a JSON document
function wrongDoc(edit: (doc: any) => void): OpenApiContract {
  const doc = JSON.parse(readFileSync(OPENAPI_FILE, "utf8"));
  edit(doc);
  return new OpenApiContract(doc);
}

test("the daemon's answers agree with openapi.json; a wrong schema, status or Allow is reported", async () => {
  const good = new OpenApiContract();
  const one = await exchange("GET", "/admin/api/plugins/probe");
  assert.deepEqual(good.check(one), []);
  assert.ok(JSON.parse(one.body!).flags.includes("LOADED"));

  // the flags enum as it was before EXTRACTED, LOADED and FAILED were documented
  const oldFlags = wrongDoc((doc) => {
    const flags = doc.components.schemas.PluginView.properties.flags.items;
    flags.enum = flags.enum.filter((f: string) => !["EXTRACTED", "LOADED", "FAILED"].includes(f));
  });
  assert.match(oldFlags.check(one).join("\n"), /body\/flags\/\d+: must be equal to one of the allowed values/);
  const list = await exchange("GET", "/admin/api/plugins");
  assert.deepEqual(good.check(list), []);
  assert.match(oldFlags.check(list).join("\n"), /body\/plugins\/0\/flags/);

  const undocumented = wrongDoc((doc) => {
    delete doc.paths["/admin/api/plugins/{name}"].get.responses["200"];
  });
  assert.match(
    undocumented.check(one).join("\n"),
    /status 200 is not documented for GET \/admin\/api\/plugins\/\{name\}/,
  );

  const wrongType = wrongDoc((doc) => {
    doc.components.schemas.PluginView.properties.restarts = { type: "string" };
  });
  assert.match(wrongType.check(one).join("\n"), /body\/restarts: must be string/);

  const notAllowed = await exchange("DELETE", "/admin/api/plugins/probe/activate");
  assert.equal(notAllowed.status, 405);
  assert.equal(notAllowed.headers.allow, "POST");
  assert.deepEqual(good.check(notAllowed), []);
  const moreMethods = wrongDoc((doc) => {
    doc.paths["/admin/api/plugins/{name}/activate"].get = doc.paths["/admin/api/plugins/{name}"].get;
  });
  assert.match(
    moreMethods.check(notAllowed).join("\n"),
    /405 Allow is "POST", the document's methods are "GET, HEAD, POST"/,
  );
  assert.match(moreMethods.check({ ...notAllowed, method: "GET" }).join("\n"), /status 405 is not documented/);

  const missing = await exchange("GET", "/admin/api/nothing/here");
  assert.equal(missing.status, 404);
  assert.deepEqual(good.check(missing), []);
  assert.match(good.check({ ...missing, status: 200 }).join("\n"), /undocumented path answered 200/);
  assert.match(good.check({ ...missing, body: "not found" }).join("\n"), /error body is not JSON/);
});

test("every documented path answers each method it does not document with 405 and the document's Allow", async () => {
  const contract = new OpenApiContract();
  let checked = 0;
  for (const template of Object.keys(contract.doc.paths as object)) {
    const path = template.replace("{name}", "probe").replace("{file}", "app.js");
    const allow = contract.allowedMethods(template);
    for (const method of ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]) {
      if (allow.includes(method)) continue;
      const x = await exchange(method, path);
      assert.equal(x.status, 405, `${method} ${path}`);
      assert.deepEqual(contract.check(x), [], `${method} ${path}`); // Allow lists exactly the documented methods
      checked++;
    }
  }
  assert.ok(checked > 80, `${checked} requests`);
});

test("a removed plugin answers manifest null, which the document allows (an object only, before)", async () => {
  const archive = readFileSync(await buildPackage(d.work, { name: "gone", version: "1.0.0" }));
  const r = await d.api("POST", "/admin/api/plugins", {
    body: archive,
    headers: { "content-type": "application/gzip" },
  });
  assert.equal(r.status, 201);
  assert.equal((await d.api("DELETE", "/admin/api/plugins/gone")).status, 200);
  const removed = await exchange("GET", "/admin/api/plugins/gone");
  assert.equal(removed.status, 200);
  const body = JSON.parse(removed.body!);
  assert.equal(body.status, "removed");
  assert.equal(body.manifest, null);
  assert.deepEqual(new OpenApiContract().check(removed), []);
  const objectOnly = wrongDoc((doc) => {
    doc.paths["/admin/api/plugins/{name}"].get.responses["200"].content["application/json"].schema.allOf[1].properties =
      { manifest: { $ref: "#/components/schemas/Manifest" } };
  });
  assert.match(objectOnly.check(removed).join("\n"), /body\/manifest: must be object/);
});

test("event stream data is checked message by message", async () => {
  const good = new OpenApiContract();
  const pointer = "/paths/~1admin~1api~1events/get/responses/200/content/text~1event-stream/x-data-schema";
  const events = (await exchange("GET", "/admin/api/plugins/probe/events")).body!;
  const stored = JSON.parse(events).events[0];
  const lifecycle = { ...stored, plugin: "probe" };
  assert.deepEqual(
    good.checkEvents(`: connected\n\nevent: lifecycle\ndata: ${JSON.stringify(lifecycle)}\n\n`, pointer),
    [],
  );
  const bad = { ...lifecycle, revision: "one" };
  assert.match(
    good.checkEvents(`event: lifecycle\ndata: ${JSON.stringify(bad)}\n\n`, pointer).join("\n"),
    /event data/,
  );
  // an incomplete last message (a stream cut off) is not judged
  assert.deepEqual(good.checkEvents(`event: lifecycle\ndata: {"rev`, pointer), []);
});

test("record() throws a ContractViolation that names the call", () => {
  const before = checkedCount();
  assert.throws(
    () =>
      record({
        method: "GET",
        path: "/admin/api/plugins?x=1",
        status: 200,
        headers: { "content-type": "application/json" },
        body: '{"plugins": "none"}',
      }),
    (err: Error) => err instanceof ContractViolation && /GET \/admin\/api\/plugins\?x=1 -> 200/.test(err.message),
  );
  assert.equal(checkedCount(), before + 1);
});

test("a wrong answer seen by fetch fails the node:test test that made the call", async () => {
  const recorder = new URL("./recorder.js", import.meta.url).href;
  const file = `${d.work}/violation.test.mjs`;
  // A server answering the admin API's list with a body openapi.json does not allow.
  writeFileSync(
    file,
    `import { createServer } from "node:http";
import { test } from "node:test";
import { watch } from ${JSON.stringify(recorder)};
test("lists plugins from a wrong server", async () => {
  const server = createServer((_q, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ plugins: [{ name: 1 }] }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const origin = "http://127.0.0.1:" + server.address().port;
  watch(origin);
  const res = await fetch(origin + "/admin/api/plugins");
  await res.json();
  await new Promise((r) => setTimeout(r, 50));
  server.close();
});
`,
  );
  const out = await new Promise<{ code: number; stdout: string }>((resolve) =>
    // without NODE_TEST_CONTEXT, which would make the child report to this runner instead of printing TAP
    execFile(
      process.execPath,
      ["--test", "--test-reporter=tap", file],
      { timeout: 60_000, env: childEnv() },
      (err, stdout) => resolve({ code: err ? Number(err.code) : 0, stdout }),
    ),
  );
  rmSync(file);
  assert.equal(out.code, 1, out.stdout);
  assert.match(out.stdout, /not ok 1 - lists plugins from a wrong server/);
  assert.match(out.stdout, /disagrees with openapi\.json: GET \/admin\/api\/plugins -> 200/);
  assert.match(out.stdout, /body\/plugins\/0: must have required property 'version'/);
});
