import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import type { PluginModule } from "../src/contract.js";
import { HttpError } from "../src/contract.js";
import * as files from "../src/files.js";
import { createTestHarness, type TestHarness } from "../src/runtime/harness.js";

const SMALL_LIMITS = { maxFileBytes: 1000, maxTotalBytes: 1500, maxFiles: 3, maxFields: 2, maxFieldBytes: 100 };

/** Settles once per failed upload, so tests can wait for the handler's cleanup instead of sleeping. */
let uploadFailed: ((err: unknown) => void) | undefined;

const plugin: PluginModule = {
  manifest: () => ({ name: "filer", version: "1.0.0" }),
  init() {},
  routes: () => [
    {
      method: "POST",
      path: "/upload",
      handler: async (req) => {
        const small = req.query.small === "1";
        try {
          const r = await files.receive(req, small ? { limits: SMALL_LIMITS } : {});
          return { status: 201, body: r };
        } catch (err) {
          uploadFailed?.(err);
          throw err;
        }
      },
    },
    {
      method: "GET",
      path: "/files/:id",
      handler: (req) => files.download(req.params.id, String(req.query.name ?? "download.bin")),
    },
  ],
};

let h: TestHarness;
let url: string;
let port: number;
before(async () => {
  h = await createTestHarness(plugin);
  ({ url, port } = await h.listen());
});
after(() => h.close());

const uploads = () => join(h.config.paths.data, "uploads");
const leftovers = () => (existsSync(uploads()) ? readdirSync(uploads()) : []);

function form(parts: { field: string; name?: string; content: string | Uint8Array; type?: string }[]): FormData {
  const fd = new FormData();
  for (const p of parts) {
    if (p.name === undefined) fd.append(p.field, String(p.content));
    else fd.append(p.field, new Blob([p.content as BlobPart], { type: p.type ?? "application/octet-stream" }), p.name);
  }
  return fd;
}

async function upload(fd: FormData, small = false) {
  const res = await fetch(`${url}/upload${small ? "?small=1" : ""}`, { method: "POST", body: fd });
  return {
    status: res.status,
    body: (await res.json()) as { files: files.StoredFile[]; fields: unknown } & {
      error: { code: string; details: unknown };
    },
  };
}

function waitFailure(): Promise<unknown> {
  return new Promise((resolve) => {
    uploadFailed = (err) => {
      uploadFailed = undefined;
      resolve(err);
    };
  });
}

test("multipart upload: files stored under generated ids with sanitised names, fields collected", async () => {
  const a = Buffer.from("hello attachment");
  const b = new Uint8Array(5000).map((_, i) => i % 251);
  const r = await upload(
    form([
      { field: "title", content: "report" },
      { field: "doc", name: "../../etc/pass\u0000wd.txt", content: a, type: "text/plain" },
      { field: "doc", name: "Bilde\u0301.bin", content: b },
      { field: "tag", content: "x" },
    ]),
  );
  assert.equal(r.status, 201);
  assert.deepEqual(r.body.fields, { title: "report", tag: "x" });
  const [f1, f2] = r.body.files;
  assert.equal(f1.name, "passwd.txt");
  assert.equal(f2.name, "Bildé.bin".normalize("NFC"));
  assert.equal(f1.mimeType, "text/plain");
  assert.equal(f1.size, a.length);
  assert.equal(f2.size, 5000);
  for (const f of [f1, f2]) {
    assert.match(f.id, /^[0-9a-f-]{36}$/);
    assert.equal(f.path, join(uploads(), f.id));
  }
  assert.deepEqual(readFileSync(f1.path), a);
  assert.deepEqual(new Uint8Array(readFileSync(f2.path)), b);
  assert.equal(f2.sha256, createHash("sha256").update(b).digest("hex"));
  assert.deepEqual(leftovers().sort(), [f1.id, f2.id].sort(), "only the stored files, no .part leftovers");
});

test("download: Content-Disposition, ETag / 304, Range / 416, HEAD; ids only", async () => {
  const content = Buffer.from("0123456789abcdefghij");
  const { body } = await upload(form([{ field: "f", name: "x.txt", content }]));
  const id = body.files[0].id;
  const name = "Résumé «final».txt";
  const res = await fetch(`${url}/files/${id}?name=${encodeURIComponent(name)}`);
  assert.equal(res.status, 200);
  assert.equal(Buffer.from(await res.arrayBuffer()).toString(), content.toString());
  assert.equal(
    res.headers.get("content-disposition"),
    `attachment; filename*=UTF-8''${encodeURIComponent(files.sanitizeFilename(name))}`,
  );
  const etag = res.headers.get("etag")!;
  assert.ok(etag);
  assert.equal(res.headers.get("accept-ranges"), "bytes");

  const cached = await fetch(`${url}/files/${id}`, { headers: { "if-none-match": etag } });
  assert.equal(cached.status, 304);
  const part = await fetch(`${url}/files/${id}`, { headers: { range: "bytes=10-14" } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get("content-range"), `bytes 10-14/${content.length}`);
  assert.equal(await part.text(), "abcde");
  const tail = await fetch(`${url}/files/${id}`, { headers: { range: "bytes=-3" } });
  assert.equal(await tail.text(), "hij");
  const beyond = await fetch(`${url}/files/${id}`, { headers: { range: "bytes=100-" } });
  assert.equal(beyond.status, 416);
  await beyond.arrayBuffer();
  const head = await fetch(`${url}/files/${id}`, { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), String(content.length));

  for (const bad of ["..%2F..%2Fetc%2Fpasswd", "not-an-id", `${id}x`]) {
    const r = await fetch(`${url}/files/${bad}`);
    assert.equal(r.status, 404, bad);
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, "file_not_found");
  }
  // The in-memory harness request honours Reply.file too.
  const direct = await h.request("GET", `/files/${id}?name=a.txt`);
  assert.equal(direct.status, 200);
  assert.equal(direct.headers["content-disposition"], "attachment; filename*=UTF-8''a.txt");
  assert.equal(direct.raw.toString(), content.toString());
  assert.equal(await files.remove(id), true);
  assert.equal(await files.remove(id), false);
  assert.equal(await files.remove("../x"), false);
  assert.equal((await fetch(`${url}/files/${id}`)).status, 404);
});

test("limits: 413 per file, in total, files and fields count, field size; nothing left behind", async () => {
  const before = new Set(leftovers());
  const cases: [string, Parameters<typeof form>[0]][] = [
    ["maxFileBytes", [{ field: "f", name: "big", content: new Uint8Array(1001) }]],
    [
      "maxFileBytes",
      [
        { field: "f", name: "ok", content: new Uint8Array(1000) },
        { field: "f", name: "big", content: new Uint8Array(1001) },
      ],
    ],
    [
      "maxTotalBytes",
      [
        { field: "f", name: "a", content: new Uint8Array(800) },
        { field: "f", name: "b", content: new Uint8Array(800) },
      ],
    ],
    ["maxFiles", [1, 2, 3, 4].map((i) => ({ field: "f", name: `n${i}`, content: "x" }))],
    ["maxFields", [1, 2, 3].map((i) => ({ field: `k${i}`, content: "v" }))],
    ["maxFieldBytes", [{ field: "k", content: "v".repeat(101) }]],
  ];
  for (const [limit, parts] of cases) {
    const failed = waitFailure();
    const r = await upload(form(parts), true);
    assert.equal(r.status, 413, limit);
    assert.equal(r.body.error.code, "payload_too_large");
    assert.equal((r.body.error.details as { limit: string }).limit, limit);
    assert.ok((await failed) instanceof HttpError);
    assert.deepEqual(new Set(leftovers()), before, `${limit}: no partial or completed file of the request left`);
  }
  // Exactly at the per-file limit is fine.
  const ok = await upload(form([{ field: "f", name: "edge", content: new Uint8Array(1000) }]), true);
  assert.equal(ok.status, 201);
  assert.equal(ok.body.files[0].size, 1000);
  // Not multipart.
  const json = await fetch(`${url}/upload`, {
    method: "POST",
    body: "{}",
    headers: { "content-type": "application/json" },
  });
  assert.equal(json.status, 415);
  await json.arrayBuffer();
});

test("an upload aborted by the client leaves no file", async () => {
  const before = new Set(leftovers());
  const failed = waitFailure();
  const boundary = "----hecateabort";
  const req = request({
    host: "127.0.0.1",
    port,
    method: "POST",
    path: "/upload",
    headers: { "content-type": `multipart/form-data; boundary=${boundary}`, "content-length": 10_000_000 },
  });
  req.on("error", () => {});
  req.write(`--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n`);
  req.write(Buffer.alloc(300_000, 1));
  // Wait until the part file exists, then hang up mid-file.
  while (!leftovers().some((f) => f.startsWith(".part-") && !before.has(f))) await new Promise((r) => setTimeout(r, 5));
  req.destroy();
  const err = await failed;
  assert.ok(err instanceof HttpError && err.code === "upload_aborted", String(err));
  assert.deepEqual(new Set(leftovers()), before);
});

test("a 50 MB upload streams to disk without being held in memory", async () => {
  setFlagsFromString("--expose-gc");
  const gc = runInNewContext("gc") as () => void;
  setFlagsFromString("--no-expose-gc");
  const size = 50 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) % 256;
  const boundary = "----hecatebig";
  const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="f"; filename="big.bin"\r\n\r\n`);
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const hash = createHash("sha256");

  gc();
  const baseline = process.memoryUsage();
  const growth = () => {
    const m = process.memoryUsage();
    return m.heapUsed - baseline.heapUsed + (m.arrayBuffers - baseline.arrayBuffers);
  };
  // Live memory: after a full GC every 5 MB sent (garbage chunks are not "held"); raw: sampled without GC.
  let livePeak = 0;
  let rawPeak = 0;
  const sampler = setInterval(() => {
    rawPeak = Math.max(rawPeak, growth());
  }, 2);
  const started = performance.now();
  const result = await new Promise<{ status: number; body: { files: files.StoredFile[] } }>((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        method: "POST",
        path: "/upload",
        headers: {
          "content-type": `multipart/form-data; boundary=${boundary}`,
          "content-length": head.length + size + tail.length,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on("data", (c: Buffer) => parts.push(c));
        res.on("end", () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString()) }));
      },
    );
    req.on("error", reject);
    (async () => {
      req.write(head);
      for (let sent = 0; sent < size; sent += chunk.length) {
        hash.update(chunk);
        if (sent % (5 * 1024 * 1024) === 0 && sent > 0) {
          gc();
          livePeak = Math.max(livePeak, growth());
        }
        if (!req.write(chunk)) await new Promise((r) => req.once("drain", r));
      }
      req.end(tail);
    })().catch(reject);
  });
  clearInterval(sampler);
  const elapsedMs = performance.now() - started;
  assert.equal(result.status, 201);
  const stored = result.body.files[0];
  assert.equal(stored.size, size);
  assert.equal(stored.sha256, hash.digest("hex"));
  console.log(
    `BENCH_JSON ${JSON.stringify({ filesUploadBytes: size, liveMemoryPeakBytes: livePeak, rawMemoryPeakBytes: rawPeak, uploadMs: Math.round(elapsedMs), mbPerSec: Math.round(size / 1048576 / (elapsedMs / 1000)) })}`,
  );
  // Measured ~1-8 MB (flow-control window + stream buffers; ArrayBuffer backing stores are freed lazily after GC).
  assert.ok(livePeak < 16 * 1024 * 1024, `live heap+buffers growth ${livePeak} bytes during a ${size} byte upload`);
  await files.remove(stored.id);
});

test("sanitizeFilename", () => {
  const s = files.sanitizeFilename;
  assert.equal(s("../../etc/passwd"), "passwd");
  assert.equal(s("C:\\Users\\me\\report.pdf"), "report.pdf");
  assert.equal(s("a\u0000b\nc\u007f.txt"), "abc.txt");
  assert.equal(s(".."), "file");
  assert.equal(s("..."), "file");
  assert.equal(s(""), "file");
  assert.equal(s(".bashrc"), "bashrc");
  assert.equal(s("e\u0301t\u0065\u0301.txt"), "été.txt");
  assert.equal(s("invoice\u202Efdp.exe"), "invoicefdp.exe", "bidi override removed");
  assert.equal(s('a<b>:"c"|?*.txt'), "a_b___c____.txt");
  const long = s(`${"ü".repeat(300)}.pdf`);
  assert.ok(Buffer.byteLength(long) <= 200);
  assert.ok(long.endsWith(".pdf"));
  const emoji = s("😀".repeat(100));
  assert.ok(Buffer.byteLength(emoji) <= 200);
  assert.equal(
    [...emoji].every((c) => c === "😀"),
    true,
    "no half surrogate pairs",
  );
  assert.throws(() => files.pathOf("../../x"), HttpError);
});
