/**
 * The taskboard example plugin through the real daemon vs the same work in Fastify 5 + better-sqlite3, measured in
 * the same run (load generator in a child process, keep-alive, 16 connections, best of two runs each):
 *  - GET  /boards/bench/tasks: the board checked, its tasks listed with their attachments (the plugin's two read
 *    model selects) -> JSON;
 *  - POST /boards/bench/tasks: body validated (JSON schema), board + column checked, the event appended to an event
 *    table (WAL, synchronous=FULL, as the plugin's store) and the task inserted into the read model (WAL, NORMAL),
 *    then selected back with its attachments -> 201 JSON.
 * Needs the built taskboard (`npm run build` at the repository root). Prints `BENCH_JSON {...}` last.
 */

import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import Fastify from "fastify";
import { startDaemon } from "../src/daemon.js";
import { type LoadRequest, type LoadResult, round, loadgen as runLoad } from "./run-load.js";

const DURATION = Number(process.env.BENCH_DURATION_MS ?? 3000);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 16);
const SEED_TASKS = 20;
const PACK = new URL("../../../../examples/taskboard/scripts/pack.mjs", import.meta.url).pathname;

const work = mkdtempSync(join(tmpdir(), "hecate-bench-taskboard-"));

// ---- the baseline: Fastify + better-sqlite3, the same tables and the same statements per request
const events = new Database(join(work, "events.sqlite"));
events.pragma("journal_mode = WAL");
events.pragma("synchronous = FULL");
events.exec(`CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
  stream TEXT NOT NULL, revision INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, created_at TEXT NOT NULL,
  UNIQUE (stream, revision))`);
const rm = new Database(join(work, "read-model.sqlite"));
rm.pragma("journal_mode = WAL");
rm.pragma("synchronous = NORMAL");
rm.exec(`CREATE TABLE boards (id TEXT PRIMARY KEY, name TEXT NOT NULL, columns TEXT NOT NULL, created_at TEXT NOT NULL);
  CREATE TABLE tasks (id TEXT PRIMARY KEY, board_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
    column_name TEXT NOT NULL, completed_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
  CREATE INDEX tasks_by_board ON tasks (board_id, created_at);
  CREATE TABLE attachments (id TEXT PRIMARY KEY, task_id TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
    content_type TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
  CREATE INDEX attachments_by_task ON attachments (task_id);`);
rm.prepare("INSERT INTO boards VALUES (?, ?, ?, ?)").run("bench", "Bench", JSON.stringify(["todo", "done"]), "now");
const getBoard = rm.prepare("SELECT * FROM boards WHERE id = ?");
const listTasks = rm.prepare("SELECT * FROM tasks WHERE board_id = ? ORDER BY created_at, id");
const getTask = rm.prepare("SELECT * FROM tasks WHERE id = ?");
// The plugin lists each task with its attachments (examples/taskboard/src/read-model.ts): the same two queries here.
const boardAttachments = rm.prepare(
  "SELECT a.* FROM attachments a JOIN tasks t ON t.id = a.task_id WHERE t.board_id = ? ORDER BY a.created_at, a.id",
);
const taskAttachments = rm.prepare("SELECT * FROM attachments WHERE task_id = ? ORDER BY created_at, id");
const appendEvent = events.prepare(
  "INSERT INTO events (id, stream, revision, type, data, created_at) VALUES (?, ?, ?, ?, ?, ?)",
);
const insertTask = rm.prepare(
  `INSERT INTO tasks (id, board_id, title, description, column_name, completed_at, created_at, updated_at)
   VALUES (?, ?, ?, ?, ?, NULL, ?, ?)`,
);
interface RawTask {
  id: string;
  board_id: string;
  title: string;
  description: string;
  column_name: string;
  completed_at: string | null;
  created_at: string;
  updated_at: string;
}
interface RawAttachment {
  id: string;
  task_id: string;
  name: string;
  size: number;
  content_type: string;
  sha256: string;
  created_at: string;
}
/** As the plugin's toTasks: each task with its attachments (grouped by task once). */
function toTasks(rows: RawTask[], attachments: RawAttachment[]) {
  const byTask = new Map<string, unknown[]>();
  for (const a of attachments) {
    const list = byTask.get(a.task_id) ?? [];
    list.push({
      id: a.id,
      name: a.name,
      size: a.size,
      contentType: a.content_type,
      sha256: a.sha256,
      createdAt: a.created_at,
    });
    byTask.set(a.task_id, list);
  }
  return rows.map((r) => ({
    id: r.id,
    boardId: r.board_id,
    title: r.title,
    description: r.description,
    column: r.column_name,
    completedAt: r.completed_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    attachments: byTask.get(r.id) ?? [],
  }));
}
const boardOr404 = (id: string) => getBoard.get(id) as { columns: string } | undefined;

const fastify = Fastify({ keepAliveTimeout: 65_000 });
fastify.get<{ Params: { board: string } }>("/boards/:board/tasks", async (req, reply) => {
  if (!boardOr404(req.params.board)) return reply.code(404).send({ error: "board_not_found" });
  const board = req.params.board;
  return { tasks: toTasks(listTasks.all(board) as RawTask[], boardAttachments.all(board) as RawAttachment[]) };
});
fastify.post<{ Params: { board: string }; Body: { title: string; description: string; column?: string } }>(
  "/boards/:board/tasks",
  {
    schema: {
      params: { type: "object", required: ["board"], properties: { board: { type: "string" } } },
      body: {
        type: "object",
        additionalProperties: false,
        required: ["title"],
        properties: {
          title: { type: "string", minLength: 1, maxLength: 200 },
          description: { type: "string", maxLength: 5000, default: "" },
          column: { type: "string" },
        },
      },
    },
  },
  async (req, reply) => {
    const b = boardOr404(req.params.board);
    if (!b) return reply.code(404).send({ error: "board_not_found" });
    const column = req.body.column ?? (JSON.parse(b.columns) as string[])[0];
    const id = randomUUID();
    const at = new Date().toISOString();
    const data = { boardId: req.params.board, title: req.body.title, description: req.body.description, column };
    appendEvent.run(randomUUID(), `task-${id}`, 0, "task_created_v1", JSON.stringify(data), at);
    insertTask.run(id, req.params.board, data.title, data.description, column, at, at);
    return reply
      .code(201)
      .header("location", `/tasks/${id}`)
      .send(toTasks([getTask.get(id) as RawTask], taskAttachments.all(id) as RawAttachment[])[0]);
  },
);
await fastify.listen({ port: 0, host: "127.0.0.1" });
const fastifyUrl = `http://127.0.0.1:${(fastify.server.address() as { port: number }).port}`;

// ---- the plugin in the daemon
const archive = join(work, "taskboard.tar.gz");
execFileSync(process.execPath, [PACK, archive], { stdio: "pipe" });
const d = await startDaemon({ home: join(work, "home"), port: 0, logLevel: "silent", containers: false });
const admin = (method: string, path: string, body: Buffer | string, type: string) =>
  fetch(d.adminUrl + path, { method, body, headers: { authorization: `Bearer ${d.token}`, "content-type": type } });
const installed = await admin("POST", "/admin/api/plugins", readFileSync(archive), "application/gzip");
if (installed.status !== 201) throw new Error(`install: ${installed.status} ${await installed.text()}`);
// The plugin rate-limits writes per client address: the bench is one client, so the limit goes up.
const limits = { values: { rateLimit: { capacity: 1_000_000_000, refillPerSecond: 1_000_000_000 } } };
const set = await admin("PUT", "/admin/api/plugins/taskboard/settings", JSON.stringify(limits), "application/json");
if (set.status !== 200) throw new Error(`settings: ${set.status} ${await set.text()}`);
const pluginUrl = `${d.url}/plugin/taskboard/api`;
const board = await fetch(`${pluginUrl}/boards`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ id: "bench", name: "Bench", columns: ["todo", "done"] }),
});
if (board.status !== 201) throw new Error(`board: ${board.status} ${await board.text()}`);

const post: LoadRequest = {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({ title: "a task", description: "benchmarked" }),
};
for (const base of [pluginUrl, fastifyUrl])
  for (let i = 0; i < SEED_TASKS; i++) {
    const r = await fetch(`${base}/boards/bench/tasks`, { method: "POST", headers: post.headers, body: post.body });
    if (r.status !== 201) throw new Error(`seed ${base}: ${r.status} ${await r.text()}`);
  }

const best = (rs: LoadResult[]) => rs.reduce((a, b) => (b.rps > a.rps ? b : a));
async function compare(label: string, request?: LoadRequest) {
  const daemonRuns: LoadResult[] = [];
  const fastifyRuns: LoadResult[] = [];
  // GET lists the board's tasks: each side lists what it holds, so the list runs come first (same length).
  for (let i = 0; i < 2; i++) {
    fastifyRuns.push(await runLoad(`${fastifyUrl}/boards/bench/tasks`, CONNECTIONS, DURATION, undefined, request));
    daemonRuns.push(await runLoad(`${pluginUrl}/boards/bench/tasks`, CONNECTIONS, DURATION, undefined, request));
  }
  const f = best(fastifyRuns);
  const h = best(daemonRuns);
  const failures = [...daemonRuns, ...fastifyRuns].reduce((a, r) => a + r.non2xx + r.errors, 0);
  console.log(
    `${label}: fastify+better-sqlite3 ${f.rps.toFixed(0)} req/s (p99 ${f.p99_ms.toFixed(2)} ms), hecate taskboard ${h.rps.toFixed(0)} req/s (p99 ${h.p99_ms.toFixed(2)} ms), ratio ${(h.rps / f.rps).toFixed(3)}, failures ${failures}`,
  );
  return {
    rps_fastify_sqlite: round(f.rps, 0),
    rps_taskboard: round(h.rps, 0),
    ratio_taskboard_vs_fastify_sqlite: round(h.rps / f.rps, 3),
    p99_ms_fastify_sqlite: round(f.p99_ms),
    p99_ms_taskboard: round(h.p99_ms),
    throughput_failures: failures,
  };
}

console.log(`taskboard vs Fastify + better-sqlite3: ${CONNECTIONS} keep-alive connections, ${DURATION} ms per run`);
const list = await compare("GET list");
const create = await compare("POST create", post);

await d.close();
await fastify.close();
events.close();
rm.close();
rmSync(work, { recursive: true, force: true });
console.log(
  `BENCH_JSON ${JSON.stringify({ bench: "taskboard", connections: CONNECTIONS, duration_ms: DURATION, get_list: list, post_create: create })}`,
);
