// The SDK helpers validate / ratelimit / scheduler / files inside a real worker of the daemon's WorkerPlugins, over real
// HTTP: the plugin imports them from @hecate/sdk like any installed plugin.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type Env, json, raw, setup, writePlugin } from "./helpers.js";

const PLUGIN = `
import { files, ratelimit, scheduler, validate } from "@hecate/sdk";
export function manifest() { return { name: "helpers", version: "1.0.0" }; }
const limiter = ratelimit.createRateLimiter({ capacity: 2, refillPerSecond: 0.001 });
export function init() {
  scheduler.every(10, ({ run }) => { if (run === 2) throw new Error("second run fails"); }, { name: "flaky" });
}
const Note = { type: "object", properties: { text: { type: "string", minLength: 1 } }, required: ["text"] };
export function routes() {
  return [
    { method: "POST", path: "/notes", handler: validate.validated({ body: Note }, (_req, { body }) => ({ status: 201, body: { note: body } })) },
    { method: "GET", path: "/limited", handler: ratelimit.limited(limiter, () => ({ ok: true })) },
    { method: "POST", path: "/upload", multipart: true, handler: async (req) => ({ status: 201, body: await files.receive(req, { limits: { maxFileBytes: 8 * 1024 * 1024 } }) }) },
    { method: "GET", path: "/files/:id", handler: (req) => files.download(req.params.id, "report ü.bin") },
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

interface UploadReply {
  files: { id: string; name: string; size: number; sha256: string }[];
  error?: { code: string };
}

/** Streams a multipart body with one file of `size` pattern bytes; resolves with status and JSON reply. */
function uploadFile(port: number, size: number): Promise<{ status: number; body: UploadReply; sha256: string }> {
  const boundary = "----hecate-e2e";
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="../big.bin"\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 13) % 256;
  const hash = createHash("sha256");
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/plugin/helpers/api/upload",
        headers: {
          "content-type": `multipart/form-data; boundary=${boundary}`,
          "content-length": head.length + size + tail.length,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode!,
            body: JSON.parse(Buffer.concat(parts).toString()),
            sha256: hash.digest("hex"),
          }),
        );
      },
    );
    // The daemon may answer 413 before the whole body is sent and close the connection.
    req.on("error", (err) => reject(err));
    (async () => {
      req.write(head);
      for (let sent = 0; sent < size; sent += chunk.length) {
        const piece = chunk.subarray(0, Math.min(chunk.length, size - sent));
        hash.update(piece);
        if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
        if (req.destroyed) return;
      }
      req.end(tail);
    })().catch(reject);
  });
}

test("SDK helpers in a daemon worker: validate, ratelimit, files with Range download, scheduler errors in the log", async () => {
  const spec = writePlugin(env.home, "helpers", "1.0.0", PLUGIN);
  const logs: { msg: string; level: string }[] = [];
  const flakyLogged = new Promise<void>((resolve) => {
    env.workers.on("log", (entry: { msg: string; level: string }) => {
      logs.push(entry);
      if (entry.msg.includes("scheduled job flaky failed: second run fails")) resolve();
    });
  });
  await env.workers.load(spec);

  // validate
  const bad = await raw(env.port, "POST", "/plugin/helpers/api/notes", {
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "" }),
  });
  assert.equal(bad.status, 400);
  assert.deepEqual(json(bad).error.details, [
    { location: "body", path: "/text", message: "must NOT have fewer than 1 characters" },
  ]);
  const good = await raw(env.port, "POST", "/plugin/helpers/api/notes", {
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ text: "hi" }),
  });
  assert.equal(good.status, 201);

  // ratelimit (keyed by the client address the daemon passes on)
  assert.equal((await raw(env.port, "GET", "/plugin/helpers/api/limited")).status, 200);
  assert.equal((await raw(env.port, "GET", "/plugin/helpers/api/limited")).status, 200);
  const limited = await raw(env.port, "GET", "/plugin/helpers/api/limited");
  assert.equal(limited.status, 429);
  assert.equal(limited.headers["retry-after"], "1000");

  // files: 6 MB streamed through the daemon into the worker and onto disk
  const up = await uploadFile(env.port, 6 * 1024 * 1024);
  assert.equal(up.status, 201, JSON.stringify(up.body));
  const stored = up.body.files[0];
  assert.equal(stored.size, 6 * 1024 * 1024);
  assert.equal(stored.sha256, up.sha256);
  assert.equal(stored.name, "big.bin");
  assert.ok(existsSync(join(spec.config.paths.data, "uploads", stored.id)));

  const whole = await raw(env.port, "GET", `/plugin/helpers/api/files/${stored.id}`);
  assert.equal(whole.status, 200);
  assert.equal(whole.body.length, 6 * 1024 * 1024);
  assert.equal(createHash("sha256").update(whole.body).digest("hex"), up.sha256);
  assert.equal(whole.headers["content-disposition"], `attachment; filename*=UTF-8''report%20%C3%BC.bin`);
  const etag = String(whole.headers.etag);
  const notModified = await raw(env.port, "GET", `/plugin/helpers/api/files/${stored.id}`, {
    headers: { "if-none-match": etag },
  });
  assert.equal(notModified.status, 304);
  const range = await raw(env.port, "GET", `/plugin/helpers/api/files/${stored.id}`, {
    headers: { range: "bytes=65536-65545" },
  });
  assert.equal(range.status, 206);
  assert.deepEqual(range.body, whole.body.subarray(65536, 65546));

  // over the per-file limit: 413 and nothing left in the uploads dir but the first file
  const tooBig = await uploadFile(env.port, 9 * 1024 * 1024).catch((err: Error) => ({
    status: 0,
    body: { files: [], error: { code: err.message } },
  }));
  assert.equal(tooBig.status, 413, JSON.stringify(tooBig.body));
  assert.deepEqual(readdirSync(join(spec.config.paths.data, "uploads")), [stored.id]);

  // scheduler: the failing run is logged to the plugin's log through the host
  await flakyLogged;
  assert.ok(logs.some((l) => l.level === "error" && l.msg.includes("flaky")));
  await env.workers.unload("helpers", { deadlineMs: 2000 });
});
