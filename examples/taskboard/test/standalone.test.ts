/**
 * The taskboard plugin run standalone with the SDK's test harness: the same dispatcher as in the daemon, the real
 * event store, read model, files on disk, scheduler and ws helper; no daemon, no sockets.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { createTestHarness } from "@hecate/sdk";
import * as plugin from "../src/index.js";

type Harness = Awaited<ReturnType<typeof createTestHarness>>;
type Ws = Awaited<ReturnType<Harness["connect"]>>;

interface Task {
  id: string;
  boardId: string;
  title: string;
  column: string;
  completedAt: string | null;
  attachments: { id: string; name: string; size: number; sha256: string; contentType: string }[];
}

async function open(settings: Record<string, unknown> = {}, paths?: Harness["config"]["paths"]) {
  return createTestHarness(plugin, { settings, config: paths ? { paths } : undefined });
}

function cleanup(h: Harness): void {
  rmSync(join(h.config.paths.root, "..", ".."), { recursive: true, force: true });
}

/** Reads live messages in order, waiting when none is queued. */
function reader(conn: Ws) {
  let cursor = 0;
  return async (): Promise<Record<string, unknown>> => {
    while (conn.messages.length <= cursor) await conn.next();
    return JSON.parse(String(conn.messages[cursor++])) as Record<string, unknown>;
  };
}

async function multipart(fields: Record<string, string | { name: string; data: Buffer; type: string }>) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === "string") form.append(k, v);
    else form.append(k, new Blob([v.data], { type: v.type }), v.name);
  }
  const req = new Request("http://local/", { method: "POST", body: form });
  return {
    body: new Uint8Array(await req.arrayBuffer()),
    headers: { "content-type": req.headers.get("content-type")! },
  };
}

test("task lifecycle: create, move, complete, attach, download, delete, with live updates and the read model", async () => {
  const h = await open();
  try {
    const boards = await h.request("GET", "/boards");
    assert.equal(boards.status, 200);
    assert.deepEqual(
      (boards.body as { boards: { id: string; columns: string[] }[] }).boards.map((b) => [b.id, b.columns]),
      [["main", ["todo", "doing", "done"]]],
    );

    const conn = await h.connect("/boards/main/live");
    const next = reader(conn);
    assert.deepEqual(await next(), { type: "hello", boardId: "main" });

    const created = await h.request("POST", "/boards/main/tasks", { body: { title: "Write the README" } });
    assert.equal(created.status, 201);
    const task = created.body as Task;
    assert.equal(task.column, "todo");
    assert.equal(created.headers.location, `/plugin/taskboard/api/tasks/${task.id}`);
    const live1 = await next();
    assert.equal(live1.type, "task_created");
    assert.deepEqual(live1.task, task);

    const moved = await h.request("POST", `/tasks/${task.id}/move`, { body: { column: "doing" } });
    assert.equal(moved.status, 200);
    assert.equal((moved.body as Task).column, "doing");
    assert.equal((await next()).type, "task_moved");
    const badColumn = await h.request("POST", `/tasks/${task.id}/move`, { body: { column: "later" } });
    assert.equal(badColumn.status, 422);
    assert.equal((badColumn.body as { error: { code: string } }).error.code, "unknown_column");

    assert.equal((await h.request("POST", `/tasks/${task.id}/complete`)).status, 200);
    assert.equal((await next()).type, "task_completed");
    const again = await h.request("POST", `/tasks/${task.id}/complete`);
    assert.equal(again.status, 409);
    assert.equal((again.body as { error: { code: string } }).error.code, "task_already_completed");

    // Attachment: multipart upload (streamed to the data dir), recorded as an event, downloadable.
    const content = Buffer.from(`notes ${"x".repeat(50_000)}`);
    const upload = await multipart({ file: { name: "notes v1.txt", data: content, type: "text/plain" } });
    const attached = await h.request("POST", `/tasks/${task.id}/attachments`, upload);
    assert.equal(attached.status, 201, JSON.stringify(attached.body));
    const [att] = (attached.body as Task).attachments;
    assert.equal(att.name, "notes v1.txt");
    assert.equal(att.size, content.length);
    assert.equal(att.sha256, createHash("sha256").update(content).digest("hex"));
    assert.equal((await next()).type, "file_attached");
    const down = await h.request("GET", `/tasks/${task.id}/attachments/${att.id}`);
    assert.equal(down.status, 200);
    assert.ok(down.raw.equals(content));
    const uploads = join(h.config.paths.data, "uploads");
    assert.deepEqual(readdirSync(uploads), [att.id]);

    const list = await h.request("GET", "/boards/main/tasks?column=doing");
    assert.deepEqual(
      (list.body as { tasks: Task[] }).tasks.map((t) => [t.id, t.column, t.attachments.length, !!t.completedAt]),
      [[task.id, "doing", 1, true]],
    );
    assert.deepEqual((await h.request("GET", "/boards/main/tasks?column=todo")).body, { tasks: [] });

    assert.equal((await h.request("DELETE", `/tasks/${task.id}`)).status, 204);
    const gone = await next();
    assert.equal(gone.type, "task_deleted");
    assert.equal(gone.task, null);
    assert.equal((await h.request("GET", `/tasks/${task.id}`)).status, 404);
    assert.equal((await h.request("GET", `/tasks/${task.id}/attachments/${att.id}`)).status, 404);
    assert.deepEqual(readdirSync(uploads), [], "the deleted task's file is gone");
    assert.equal((await h.request("POST", `/tasks/${task.id}/move`, { body: { column: "todo" } })).status, 404);
    conn.close();
  } finally {
    await h.close();
    cleanup(h);
  }
});

test("bad input: typed 400s with field errors, unknown boards 404, unknown ws boards refused", async () => {
  const h = await open();
  try {
    const empty = await h.request("POST", "/boards/main/tasks", { body: { title: "", extra: 1 } });
    assert.equal(empty.status, 400);
    const err = (empty.body as { error: { code: string; details: { location: string; path: string }[] } }).error;
    assert.equal(err.code, "validation_failed");
    assert.ok(err.details.some((d) => d.location === "body" && d.path === "/title"));
    const badJson = await h.request("POST", "/boards/main/tasks", {
      body: "{nope",
      headers: { "content-type": "application/json" },
    });
    assert.equal(badJson.status, 400);
    assert.equal((badJson.body as { error: { code: string } }).error.code, "invalid_json");
    const badParam = await h.request("GET", "/boards/NOT%20OK/tasks");
    assert.equal(badParam.status, 400);
    assert.equal((await h.request("GET", "/boards/nope/tasks")).status, 404);
    assert.equal((await h.request("POST", "/tasks/not-a-uuid/complete")).status, 400);
    assert.equal((await h.request("POST", "/tasks/00000000-0000-4000-8000-000000000000/complete")).status, 404);
    await assert.rejects(h.connect("/boards/nope/live"), /403/);

    // A board with its own columns; a duplicate id is a typed conflict.
    const b = await h.request("POST", "/boards", { body: { id: "team", name: "Team", columns: ["a", "b"] } });
    assert.equal(b.status, 201);
    assert.equal(b.headers.location, "/plugin/taskboard/api/boards/team");
    assert.equal((await h.request("POST", "/boards", { body: { id: "team", name: "Again" } })).status, 409);
    const t = await h.request("POST", "/boards/team/tasks", { body: { title: "x", column: "todo" } });
    assert.equal(t.status, 422);
    // Idempotency-Key: a retried POST lands on the same task, written once.
    const headers = { "idempotency-key": "retry-me-123" };
    const first = await h.request("POST", "/boards/team/tasks", { body: { title: "once" }, headers });
    const second = await h.request("POST", "/boards/team/tasks", { body: { title: "once" }, headers });
    assert.equal(first.status, 201);
    assert.equal((first.body as Task).id, (second.body as Task).id);
    assert.equal(((await h.request("GET", "/boards/team/tasks")).body as { tasks: Task[] }).tasks.length, 1);
  } finally {
    await h.close();
    cleanup(h);
  }
});

test("writes are rate limited per client: 429 with Retry-After past the burst", async () => {
  const h = await open({ rateLimit: { capacity: 3, refillPerSecond: 0.01 } });
  try {
    for (let i = 0; i < 3; i++)
      assert.equal((await h.request("POST", "/boards/main/tasks", { body: { title: `t${i}` } })).status, 201);
    const limited = await h.request("POST", "/boards/main/tasks", { body: { title: "t3" } });
    assert.equal(limited.status, 429);
    assert.equal((limited.body as { error: { code: string } }).error.code, "rate_limited");
    assert.ok(Number(limited.headers["retry-after"]) >= 1);
    // Reads are not limited.
    assert.equal((await h.request("GET", "/boards/main/tasks")).status, 200);
  } finally {
    await h.close();
    cleanup(h);
  }
});

test("cleanup job: deletes tasks completed past the retention, removes orphan files, tells live boards", async () => {
  const h = await open({ retentionHours: 0 });
  try {
    const keep = (await h.request("POST", "/boards/main/tasks", { body: { title: "open" } })).body as Task;
    const old = (await h.request("POST", "/boards/main/tasks", { body: { title: "done" } })).body as Task;
    assert.equal((await h.request("POST", `/tasks/${old.id}/complete`)).status, 200);
    const uploads = join(h.config.paths.data, "uploads");
    const upload = await multipart({ file: { name: "a.bin", data: Buffer.from("abc"), type: "application/x-test" } });
    const kept = ((await h.request("POST", `/tasks/${keep.id}/attachments`, upload)).body as Task).attachments[0];
    const orphan = "11111111-2222-4333-8444-555555555555";
    writeFileSync(join(uploads, orphan), "left behind");
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(uploads, orphan), hourAgo, hourAgo);
    const young = "66666666-2222-4333-8444-555555555555";
    writeFileSync(join(uploads, young), "upload in progress");

    const conn = await h.connect("/boards/main/live");
    const next = reader(conn);
    await next(); // hello
    const run = await h.request("POST", "/maintenance/cleanup");
    assert.equal(run.status, 200);
    const body = run.body as { lastCleanup: { deletedTasks: number; removedFiles: number }; stats: { runs: number } };
    assert.deepEqual(
      { deletedTasks: body.lastCleanup.deletedTasks, removedFiles: body.lastCleanup.removedFiles },
      { deletedTasks: 1, removedFiles: 1 },
    );
    assert.equal(body.stats.runs, 1);
    const live = await next();
    assert.deepEqual([live.type, live.taskId], ["task_deleted", old.id]);
    const tasks = ((await h.request("GET", "/boards/main/tasks")).body as { tasks: Task[] }).tasks;
    assert.deepEqual(
      tasks.map((t) => t.id),
      [keep.id],
    );
    assert.ok(existsSync(join(uploads, kept.id)));
    assert.ok(existsSync(join(uploads, young)), "a fresh unreferenced file may be an upload in progress");
    assert.ok(!existsSync(join(uploads, orphan)));
    // A second run finds nothing more to do.
    const second = (await h.request("POST", "/maintenance/cleanup")).body as typeof body;
    assert.equal(second.lastCleanup.deletedTasks, 0);
    const status = (await h.request("GET", "/maintenance")).body as { cleanup: { runs: number; nextRunAt: number } };
    assert.equal(status.cleanup.runs, 2);
    assert.ok(status.cleanup.nextRunAt > Date.now());
  } finally {
    await h.close();
    cleanup(h);
  }
});

test("state survives a reload: events, read model and files are the plugin's own and kept", async () => {
  const h = await open();
  let h2: Harness | undefined;
  try {
    const t = (await h.request("POST", "/boards/main/tasks", { body: { title: "persist me", description: "d" } }))
      .body as Task;
    await h.close();
    h2 = await open({}, h.config.paths);
    const again = await h2.request("GET", `/tasks/${t.id}`);
    assert.equal(again.status, 200);
    assert.equal((again.body as Task).title, "persist me");
    assert.equal((await h2.request("POST", `/tasks/${t.id}/move`, { body: { column: "done" } })).status, 200);
    assert.ok(existsSync(join(h.config.paths.store, "taskboard.sqlite")));
    assert.ok(existsSync(join(h.config.paths.sqlite, "taskboard.sqlite")));
  } finally {
    await h2?.close();
    await h.close();
    cleanup(h);
  }
});

test("attachments: over the size setting -> 413 and nothing kept; a form without a file -> 400; unknown task -> 404", async () => {
  const h = await open({ maxAttachmentBytes: 1000 });
  try {
    const t = (await h.request("POST", "/boards/main/tasks", { body: { title: "with files" } })).body as Task;
    const uploads = join(h.config.paths.data, "uploads");
    const big = await multipart({ file: { name: "big.bin", data: Buffer.alloc(2000, 1), type: "application/x-test" } });
    const tooBig = await h.request("POST", `/tasks/${t.id}/attachments`, big);
    assert.equal(tooBig.status, 413);
    assert.equal((tooBig.body as { error: { code: string } }).error.code, "payload_too_large");
    assert.deepEqual(existsSync(uploads) ? readdirSync(uploads) : [], [], "a refused upload leaves no file");
    const noFile = await h.request("POST", `/tasks/${t.id}/attachments`, await multipart({ note: "just text" }));
    assert.equal(noFile.status, 400);
    assert.equal((noFile.body as { error: { code: string } }).error.code, "no_file");
    const small = await multipart({ file: { name: "ok.txt", data: Buffer.from("ok"), type: "text/plain" } });
    const missing = await h.request("POST", "/tasks/00000000-0000-4000-8000-000000000000/attachments", small);
    assert.equal(missing.status, 404);
    const ok = await h.request("POST", `/tasks/${t.id}/attachments`, small);
    assert.equal(ok.status, 201);
    assert.equal((ok.body as Task).attachments.length, 1);
    assert.deepEqual(readdirSync(uploads), [(ok.body as Task).attachments[0].id]);
  } finally {
    await h.close();
    cleanup(h);
  }
});

test("attachments past the per-task maximum: the ones that fit are attached, the rest refused (409) and removed", async () => {
  const h = await open();
  try {
    const t = (await h.request("POST", "/boards/main/tasks", { body: { title: "many files" } })).body as Task;
    const form = async (n: number, tag: string) => {
      const fields: Record<string, { name: string; data: Buffer; type: string }> = {};
      for (let i = 0; i < n; i++)
        fields[`f${i}`] = { name: `${tag}-${i}.txt`, data: Buffer.from(`${tag}${i}`), type: "text/plain" };
      return multipart(fields);
    };
    for (let i = 0; i < 3; i++)
      assert.equal((await h.request("POST", `/tasks/${t.id}/attachments`, await form(5, `b${i}`))).status, 201);
    // 18 attached: of the next 5, two fit.
    assert.equal((await h.request("POST", `/tasks/${t.id}/attachments`, await form(3, "c"))).status, 201);
    const over = await h.request("POST", `/tasks/${t.id}/attachments`, await form(5, "d"));
    assert.equal(over.status, 409);
    assert.equal((over.body as { error: { code: string } }).error.code, "too_many_attachments");
    const task = (await h.request("GET", `/tasks/${t.id}`)).body as Task;
    assert.equal(task.attachments.length, 20);
    assert.deepEqual(
      task.attachments.filter((a) => a.name.startsWith("d-")).map((a) => a.name),
      ["d-0.txt", "d-1.txt"],
    );
    // Exactly the attached files are on disk: the three refused ones were removed.
    const onDisk = readdirSync(join(h.config.paths.data, "uploads")).sort();
    assert.deepEqual(onDisk, task.attachments.map((a) => a.id).sort());
  } finally {
    await h.close();
    cleanup(h);
  }
});
