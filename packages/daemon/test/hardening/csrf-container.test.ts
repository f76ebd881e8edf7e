/**
 * CSRF rules for a real container plugin (Podman): the daemon does not know a container's routes, so it applies the
 * defaults (same-origin, JSON bodies) to all of them, and its manifest's `container.http` opens what it declares
 * (`cors` for every route, `multipart_paths` for uploads) — all decided in the router, before the proxy.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { validateManifest } from "@hecate/package";
import { request } from "undici";
import { type Env, installPlugin, setup } from "../container/helpers.js";

const APP = "http://app.example:8443";
const EVIL = "http://evil.example";

let env: Env;

before(async () => {
  env = await setup();
  await env.containers.load(installPlugin(env.home, "plain"));
  await env.containers.load(
    installPlugin(env.home, "opened", undefined, (m) => {
      m.container!.http = { cors: { origins: [APP] }, multipart_paths: ["/echo"] };
    }),
  );
});
after(() => env?.close());

async function post(plugin: string, path: string, headers: Record<string, string>, body?: string) {
  const r = await request(`${env.base}/plugin/${plugin}/api${path}`, { method: "POST", headers, body });
  const text = await r.body.text();
  return { status: r.statusCode, headers: r.headers, text };
}

test("a container plugin without container.http: same-origin JSON bodies only", async () => {
  const ok = await post("plain", "/echo", { "content-type": "application/json" }, '{"a":1}');
  assert.equal(ok.status, 200);
  assert.equal(ok.text, '{"a":1}'); // it reached the container
  assert.equal((await post("plain", "/echo", { "content-type": "text/plain" }, "x")).status, 415);
  assert.equal((await post("plain", "/echo", {}, "x")).status, 415);
  assert.equal(
    (await post("plain", "/echo", { "content-type": "multipart/form-data; boundary=b" }, "--b--")).status,
    415,
  );
  const foreign = await post("plain", "/echo", { "content-type": "application/json", origin: EVIL }, "{}");
  assert.equal(foreign.status, 403);
  assert.match(foreign.text, /origin_forbidden/);
  // Bodyless same-origin POSTs still pass.
  assert.equal((await post("plain", "/echo", {})).status, 200);
});

test("container.http: cors opens every route to the listed origin, multipart_paths take uploads", async () => {
  const cross = await post("opened", "/echo", { "content-type": "application/json", origin: APP }, '{"b":2}');
  assert.equal(cross.status, 200);
  assert.equal(cross.text, '{"b":2}');
  assert.equal(cross.headers["access-control-allow-origin"], APP);
  const pre = await request(`${env.base}/plugin/opened/api/inspect`, {
    method: "OPTIONS",
    headers: { origin: APP, "access-control-request-method": "PUT" },
  });
  await pre.body.dump();
  assert.equal(pre.statusCode, 204);
  assert.equal(pre.headers["access-control-allow-origin"], APP);
  assert.equal((await post("opened", "/echo", { "content-type": "application/json", origin: EVIL }, "{}")).status, 403);
  const form = { "content-type": "multipart/form-data; boundary=b" };
  assert.equal((await post("opened", "/echo", form, "--b--\r\n")).status, 200);
  assert.equal((await post("opened", "/inspect", form, "--b--\r\n")).status, 415);
});

test("manifest.schema.json: container.http is checked at install", () => {
  const base = { name: "m", version: "1.0.0", plugin_type: "container", container: { command: ["node", "x.js"] } };
  const withHttp = (http: unknown) => ({ ...base, container: { ...base.container, http } });
  assert.doesNotThrow(() =>
    validateManifest(
      withHttp({ cors: { origins: [APP], credentials: true, methods: ["POST"] }, multipart_paths: ["/u"] }),
    ),
  );
  assert.doesNotThrow(() => validateManifest(withHttp({ cors: { origins: "*" } })));
  for (const bad of [
    { cors: { origins: "*", credentials: true } },
    { cors: { origins: ["app.example"] } },
    { cors: { origins: [] } },
    { cors: {} },
    { cors: { origins: "*", extra: 1 } },
    { multipart_paths: ["upload"] },
    { other: 1 },
  ])
    assert.throws(() => validateManifest(withHttp(bad)), /\/container\/http/, JSON.stringify(bad));
});
