/**
 * Reply framing on the container path, end to end: a container whose server writes raw bytes (fixtures/raw-http, a
 * plain `net` server) and a pipelining raw client on the daemon's port. Whatever the plugin writes, the client's
 * connection stays framed by the daemon: a bad length closes it without a complete response, nothing extra reaches
 * it, a 1xx is never final, an invalid status is a 502; each protocol error is a line in the plugin's log.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import WebSocket from "ws";
import { type Env, installPlugin, repoRoot, setup, skipReason } from "./helpers.js";
import { header, parseResponses, rawExchange } from "./raw-client.js";

const skip = skipReason();
const RAW = join(repoRoot, "packages/daemon/test/container/fixtures/raw-http");

describe("container reply framing against a raw-socket plugin (real podman)", { skip }, () => {
  let env: Env;
  let port: number;
  before(async () => {
    env = await setup();
    await env.containers.load(installPlugin(env.home, "raw", RAW));
    port = Number(new URL(env.base).port);
  });
  after(async () => {
    await env?.close();
  });

  /** `GET /case` then `GET /ok`, pipelined on one connection. */
  function pipelined(path: string) {
    const get = (p: string) => `GET /plugin/raw/api${p} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    return rawExchange(port, get(path) + get("/ok"), { responses: 2 });
  }

  /** Protocol-error lines logged for the plugin since `from` (an index into env.events). */
  async function protocolLogs(from: number): Promise<string[]> {
    await new Promise((r) => setTimeout(r, 50));
    return env.events
      .slice(from)
      .filter((e) => e.type === "log" && e.plugin === "raw" && e.msg.includes("protocol error"))
      .map((e) => (e.type === "log" ? e.msg : ""));
  }

  it("a body longer than its Content-Length: client closed, no complete response, nothing injected", async () => {
    const mark = env.events.length;
    const r = await pipelined("/long");
    const { responses } = parseResponses(r.data);
    assert.equal(r.closed, true, "the client connection is closed");
    assert.equal(responses.length, 0, `no complete response reaches the client: ${r.data.toString("latin1")}`);
    assert.ok(!r.data.includes("injected") && !r.data.includes("X-Injected"), "the injected response never arrives");
    assert.equal((await protocolLogs(mark)).length, 1, "one log line for the plugin");
  });

  it("a body shorter than its Content-Length (then the plugin hangs up): client closed, incomplete", async () => {
    const mark = env.events.length;
    const r = await pipelined("/short");
    assert.equal(r.closed, true);
    const { responses, rest } = parseResponses(r.data);
    assert.equal(responses.length, 0);
    assert.match(rest.toString("latin1"), /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 100\r\n[\s\S]*\r\n\r\nhello$/i);
    assert.equal((await protocolLogs(mark)).length, 1);
  });

  it("Transfer-Encoding with a conflicting Content-Length: 502, and the pipelined request is answered", async () => {
    const mark = env.events.length;
    const r = await pipelined("/te-cl");
    const { responses, rest } = parseResponses(r.data);
    assert.deepEqual(
      responses.map((x) => x.status),
      [502, 200],
    );
    assert.equal(responses[1].body.toString(), "fine");
    assert.equal(rest.length, 0);
    assert.equal((await protocolLogs(mark)).length, 1);
  });

  it("a 1xx is never final: a 103 is dropped, a lone 100 or a 101 to a plain request is a 502", async () => {
    const hints = await pipelined("/early-hints");
    const h = parseResponses(hints.data);
    assert.deepEqual(
      h.responses.map((x) => [x.status, x.body.toString()]),
      [
        [200, "final"],
        [200, "fine"],
      ],
    );
    assert.ok(!hints.data.includes("103"), "the 103 stays between the daemon and the plugin");
    for (const path of ["/continue", "/switch"]) {
      const mark = env.events.length;
      const r = await pipelined(path);
      const { responses, rest } = parseResponses(r.data);
      assert.deepEqual(
        responses.map((x) => x.status),
        [502, 200],
        path,
      );
      assert.equal(rest.length, 0);
      assert.ok(!r.data.includes("raw bytes") && !r.data.includes(" 100 ") && !r.data.includes(" 101 "), path);
      assert.equal((await protocolLogs(mark)).length, 1, path);
    }
  });

  it("an invalid status (999, 042, abc) is a 502", async () => {
    for (const path of ["/status-999", "/status-42", "/status-abc"]) {
      const mark = env.events.length;
      const r = await pipelined(path);
      const { responses } = parseResponses(r.data);
      assert.deepEqual(
        responses.map((x) => x.status),
        [502, 200],
        path,
      );
      assert.equal(JSON.parse(responses[0].body.toString()).error.code, "plugin_bad_response", path);
      assert.equal((await protocolLogs(mark)).length, 1, path);
    }
  });

  it("a daemon-named cookie never reaches the client; other cookies do", async () => {
    const r = await pipelined("/cookie");
    const { responses } = parseResponses(r.data);
    assert.equal(responses[0].status, 200);
    assert.deepEqual(header(responses[0], "set-cookie"), ["theme=dark"]);
  });

  describe("WebSocket upgrades: raw bytes never reach the client as if upgraded", () => {
    const wsUrl = (p: string) => `ws://127.0.0.1:${port}/plugin/raw/api${p}`;
    const upgradeHead = (p: string) =>
      `GET /plugin/raw/api${p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

    /** What a ws client sees: the refusal status, or "open" (then the first message). */
    function wsOutcome(p: string): Promise<{ status?: number; open?: boolean; message?: string; body?: string }> {
      return new Promise((resolve) => {
        const w = new WebSocket(wsUrl(p));
        w.once("unexpected-response", (_req, res) => {
          const body: Buffer[] = [];
          res.on("data", (c: Buffer) => body.push(c));
          res.on("end", () => resolve({ status: res.statusCode, body: Buffer.concat(body).toString("latin1") }));
        });
        w.once("open", () => {
          w.once("message", (d) => {
            resolve({ open: true, message: String(d) });
            w.close();
          });
        });
        w.once("error", () => resolve({}));
      });
    }

    it("200 + frame-like bytes: a closed, length-framed 200, never an upgrade", async () => {
      assert.deepEqual(await wsOutcome("/ws-200"), { status: 200, body: "\x81\x05hello\x81\x05world" });
      const r = await rawExchange(port, upgradeHead("/ws-200"));
      assert.equal(r.closed, true);
      const { responses, rest } = parseResponses(r.data);
      assert.equal(responses.length, 1);
      assert.equal(rest.length, 0, "nothing after the framed response");
      assert.equal(responses[0].status, 200);
      assert.deepEqual(header(responses[0], "connection"), ["close"]);
      assert.equal(responses[0].body.toString("latin1"), "\x81\x05hello\x81\x05world");
    });

    it("a refusal (403) is forwarded as a proper response: status, headers, body; daemon cookies stripped", async () => {
      const r = await rawExchange(port, upgradeHead("/ws-403"));
      assert.equal(r.closed, true);
      const { responses, rest } = parseResponses(r.data);
      assert.equal(responses.length, 1);
      assert.equal(rest.length, 0);
      const [res] = responses;
      assert.equal(res.status, 403);
      assert.equal(res.body.toString(), "nope");
      assert.deepEqual(header(res, "x-why"), ["no"]);
      assert.deepEqual(header(res, "set-cookie"), []);
      assert.deepEqual(header(res, "connection"), ["close"]);
    });

    it("bytes before the 101, or a 101 with a wrong accept key: 502 and a log line", async () => {
      for (const p of ["/ws-early", "/ws-bad-accept"]) {
        const mark = env.events.length;
        assert.deepEqual(await wsOutcome(p), { status: 502, body: "" }, p);
        const r = await rawExchange(port, upgradeHead(p));
        assert.match(r.data.toString("latin1"), /^HTTP\/1\.1 502 Bad Gateway\r\n/, p);
        assert.ok(!r.data.includes("hi") && !r.data.includes("early"), p);
        assert.equal(r.closed, true, p);
        assert.equal((await protocolLogs(mark)).length, 2, `${p}: one line per attempt`);
      }
    });

    it("a valid handshake from the raw plugin is relayed (its first frame arrives as a message)", async () => {
      assert.deepEqual(await wsOutcome("/ws-ok"), { open: true, message: "hi" });
    });
  });

  it("the plugin still answers after all of it", async () => {
    const r = await pipelined("/ok");
    const { responses } = parseResponses(r.data);
    assert.deepEqual(
      responses.map((x) => x.body.toString()),
      ["fine", "fine"],
    );
    assert.deepEqual(
      env.events.filter((e) => e.type !== "log"),
      [],
      "no crash, restart or failure",
    );
  });
});
