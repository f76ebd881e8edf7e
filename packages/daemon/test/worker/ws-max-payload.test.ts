/** In-process plugins: the WebSocket message limit is the daemon's default (1 MiB) unless a ws route sets its own. */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { type Env, setup, writePlugin } from "./helpers.js";

const PLUGIN = `
import { ws } from "@hecate/sdk";
export function manifest() { return { name: "lim", version: "1.0.0" }; }
export function init() {}
const echoLength = { onMessage: (c, d) => c.send("len:" + d.length) };
export function routes() {
  return [
    ws.endpoint("/default", echoLength),
    ws.endpoint("/small", echoLength, { maxPayload: 1000 }),
    { kind: "ws", path: "/large", maxPayload: 4 * 1024 * 1024, handlers: echoLength },
  ];
}
`;

let env: Env;
before(async () => {
  env = await setup();
});
after(async () => {
  await env.close();
});

/** Sends `size` bytes: the echoed length, or the close code when the daemon refused the message. */
async function sendSized(path: string, size: number): Promise<string | number> {
  const w = new WebSocket(`ws://127.0.0.1:${env.port}/plugin/lim/api${path}`);
  await once(w, "open");
  w.send(Buffer.alloc(size));
  const [first] = await Promise.race([once(w, "message"), once(w, "close")]);
  w.terminate();
  return typeof first === "number" ? first : String(first);
}

test("ws maxPayload: the daemon's 1 MiB default, or the route's own (ws.endpoint option / route definition)", async () => {
  await env.workers.load(writePlugin(env.home, "lim", "1.0.0", PLUGIN));
  const MiB = 1024 * 1024;
  const cases: [path: string, size: number, answer: string | number][] = [
    ["/default", MiB, `len:${MiB}`],
    ["/default", MiB + 1, 1009],
    ["/small", 1000, "len:1000"],
    ["/small", 1001, 1009],
    ["/large", 3 * MiB, `len:${3 * MiB}`],
    ["/large", 4 * MiB + 1, 1009],
  ];
  for (const [path, size, answer] of cases) assert.equal(await sendSized(path, size), answer, `${path} ${size}`);
});
