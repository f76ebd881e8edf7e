/**
 * What a client can and cannot do to a container plugin through the daemon's proxy (fixtures/untrusted-sdk, an SDK
 * plugin in a real container): forged forwarding headers do not change `req.remoteAddress` (so they do not get
 * round the SDK's rate limiter), daemon-named cookies from the plugin never reach the client, and huge WebSocket
 * messages are stopped at the proxy (1009) before they reach the plugin.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { request } from "undici";
import WebSocket from "ws";
import { launchChromium } from "../admin/chromium.js";
import { type Env, installPlugin, repoRoot, setup, skipReason } from "./helpers.js";

const skip = skipReason();
const FIXTURE = join(repoRoot, "packages/daemon/test/container/fixtures/untrusted-sdk");
const MB = 1024 * 1024;

describe("container proxy against forged client input (real podman)", { skip }, () => {
  let env: Env;
  let api: string;
  before(async () => {
    env = await setup();
    await env.containers.load(installPlugin(env.home, "usdk", FIXTURE));
    api = `${env.base}/plugin/usdk/api`;
  });
  after(async () => {
    await env?.close();
  });

  it("forged X-Forwarded-For / Forwarded headers do not change req.remoteAddress", async () => {
    const forged: Record<string, string>[] = [
      { "x-forwarded-for": "10.1.2.3" },
      { "x-forwarded-for": "10.1.2.3, 10.4.5.6" },
      { forwarded: "for=10.1.2.3" },
      { forwarded: 'for="[2001:db8::1]:4711";proto=https, for=10.9.9.9' },
      { forwarded: 'for="10.1.2.3' }, // unbalanced quote: would swallow the daemon's element if kept
      { "x-forwarded-for": "10.1.2.3", forwarded: "for=10.7.7.7;host=evil" },
    ];
    for (const headers of forged) {
      const r = await request(`${api}/whoami`, { headers });
      assert.equal(r.statusCode, 200);
      assert.deepEqual(await r.body.json(), { remoteAddress: "127.0.0.1" }, JSON.stringify(headers));
    }
  });

  it("6 requests with 6 different forged headers, 2 allowed per client: 2 x 200 then 4 x 429", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(`${api}/limited`, {
        headers: { "x-forwarded-for": `203.0.113.${i}`, forwarded: `for=198.51.100.${i}` },
      });
      statuses.push(r.statusCode);
      if (r.statusCode === 429) assert.ok(Number(r.headers["retry-after"]) > 0);
      await r.body.dump();
    }
    assert.deepEqual(statuses, [200, 200, 429, 429, 429, 429]);
  });

  it("a plugin's Set-Cookie named like the daemon's (hecate_*) never reaches the client; other cookies do", async () => {
    const r = await request(`${api}/cookies`);
    assert.equal(r.statusCode, 200);
    assert.deepEqual(r.headers["set-cookie"], "theme=dark; Path=/");
    await r.body.dump();
  });

  it("four 90 MiB WebSocket messages from an unauthenticated client: 1009 at the proxy, the plugin keeps answering", async () => {
    const big = Buffer.alloc(90 * MB, 0x61);
    const wsUrl = `${api.replace("http", "ws")}/ws`;
    const started = Date.now();
    const codes = await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<number>((resolve, reject) => {
            const w = new WebSocket(wsUrl);
            w.once("open", () => w.send(big, { binary: true }));
            w.once("close", (code) => resolve(code));
            w.once("error", () => {}); // the proxy may cut the socket while the client is still writing
            w.once("unexpected-response", (_req, res) => reject(new Error(`status ${res.statusCode}`)));
          }),
      ),
    );
    const ms = Date.now() - started;
    // The plugin's route accepts 256 MiB (fixture): the 1009s are the proxy's (default limit 1 MiB).
    assert.deepEqual(codes, [1009, 1009, 1009, 1009]);
    console.log(`four 90 MiB messages refused (1009) in ${ms} ms`);

    // The plugin is still there and answering, over HTTP and WebSocket, with messages up to the limit.
    const r = await request(`${api}/whoami`);
    assert.equal(r.statusCode, 200);
    await r.body.dump();
    const w = new WebSocket(wsUrl);
    await new Promise((resolve, reject) => {
      w.once("open", resolve);
      w.once("error", reject);
    });
    const echo = new Promise<Buffer>((resolve) => w.once("message", (d) => resolve(d as Buffer)));
    w.send(Buffer.alloc(MB - 1024, 0x62));
    assert.equal((await echo).length, MB - 1024);
    w.close();
    assert.deepEqual(
      env.events.filter((e) => e.type !== "log"),
      [],
      "no crash, restart or failure of the plugin",
    );
  });

  it("Chromium through the proxy: subprotocol negotiated with the plugin, echo, an oversized message closed 1009", async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${api}/whoami`); // same origin as the ws URL: the daemon's Origin check passes
      const got = await page.evaluate(
        async (url) => {
          const w = new WebSocket(url, ["chat.v2", "chat.v1"]);
          await new Promise((resolve, reject) => {
            w.onopen = resolve;
            w.onerror = reject;
          });
          const echo = new Promise<string>((resolve) => {
            w.onmessage = (e) => resolve(String(e.data));
          });
          w.send("from chromium");
          const text = await echo;
          const closed = new Promise<number>((resolve) => {
            w.onclose = (e) => resolve(e.code);
          });
          w.send(new Uint8Array(2 * 1024 * 1024));
          return { protocol: w.protocol, text, code: await closed };
        },
        `${api.replace("http", "ws")}/ws`,
      );
      // The SDK's ws server picks the first offered subprotocol; the proxy passes the plugin's choice on.
      assert.deepEqual(got, { protocol: "chat.v2", text: "echo:from chromium", code: 1009 });
    } finally {
      await browser.close();
    }
  });

  it("unload closes relayed WebSockets with 1001", async () => {
    const w = new WebSocket(`${api.replace("http", "ws")}/ws`);
    await new Promise((resolve, reject) => {
      w.once("open", resolve);
      w.once("error", reject);
    });
    const closed = new Promise<number>((resolve) => w.once("close", (code) => resolve(code)));
    const t0 = Date.now();
    await env.containers.unload("usdk");
    assert.equal(await closed, 1001);
    assert.ok(Date.now() - t0 < 15_000);
  });
});
