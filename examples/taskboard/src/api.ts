/**
 * HTTP + WebSocket API under /plugin/taskboard/api. Every body, query and param is checked against a JSON Schema
 * (sdk validate: 400 with the list of field errors); every write is rate limited per client address (sdk ratelimit:
 * 429 + Retry-After).
 */
import { createHash, randomUUID } from "node:crypto";
import {
  files,
  HttpError,
  type PluginRequest,
  type RouteDefinition,
  ratelimit,
  routes,
  scheduler,
  store,
  validate,
  ws,
} from "@hecate/sdk";
import { type CleanupResult, runCleanup } from "./cleanup.js";
import { task } from "./domain.js";
import { getAttachment, getBoard, getTask, listBoards, listTasks } from "./read-model.js";
import { boardTopic, createBoard, currentTask, requireBoard, requireColumn, taskCommand } from "./service.js";
import { settings } from "./settings.js";

const NAME = "^[a-z0-9][a-z0-9_-]{0,63}$";
const UUID = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$";
const boardParams = {
  type: "object",
  required: ["board"],
  properties: { board: { type: "string", pattern: NAME } },
} as const;
const taskParams = { type: "object", required: ["id"], properties: { id: { type: "string", pattern: UUID } } } as const;
const column = { type: "string", pattern: NAME } as const;

const newBoard = {
  type: "object",
  additionalProperties: false,
  required: ["name"],
  properties: {
    id: { type: "string", pattern: NAME },
    name: { type: "string", minLength: 1, maxLength: 100 },
    columns: { type: "array", minItems: 1, maxItems: 12, uniqueItems: true, items: column },
  },
} as const;

const newTask = {
  type: "object",
  additionalProperties: false,
  required: ["title"],
  properties: {
    title: { type: "string", minLength: 1, maxLength: 200 },
    description: { type: "string", maxLength: 5000, default: "" },
    column,
  },
} as const;

const move = { type: "object", additionalProperties: false, required: ["column"], properties: { column } } as const;

interface NewBoard {
  id?: string;
  name: string;
  columns?: string[];
}
interface NewTask {
  title: string;
  description: string;
  column?: string;
}

/** A client-chosen `Idempotency-Key` becomes the command id: a retried POST is answered without a second write. */
function commandId(req: PluginRequest, scope: string): string | undefined {
  const key = req.headers["idempotency-key"];
  if (typeof key !== "string") return undefined;
  if (!/^[\w-]{8,100}$/.test(key))
    throw new HttpError(400, "invalid_idempotency_key", "Idempotency-Key must be 8-100 of [A-Za-z0-9_-]", {
      field: "idempotency-key",
    });
  return `${scope}:${key}`;
}

/** A stable uuid-shaped id derived from a key. */
function uuidFrom(key: string): string {
  const h = createHash("sha256").update(key).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

let cleanupJob: scheduler.Job | undefined;
let lastCleanup: (CleanupResult & { at: string }) | null = null;

export function startCleanupJob(): void {
  const s = settings();
  cleanupJob = scheduler.every(
    s.cleanupIntervalSeconds * 1000,
    async ({ signal }) => {
      lastCleanup = { ...(await runCleanup(signal)), at: new Date().toISOString() };
    },
    { name: "cleanup", jitterMs: Math.min(30_000, s.cleanupIntervalSeconds * 100) },
  );
}

export function apiRoutes(): RouteDefinition[] {
  const s = settings();
  const limiter = ratelimit.createRateLimiter(s.rateLimit);
  const write = (handler: Parameters<typeof ratelimit.limited>[1]) => ratelimit.limited(limiter, handler);

  return [
    routes.get("/boards", () => ({ boards: listBoards() })),
    routes.post(
      "/boards",
      write(
        validate.validated({ body: newBoard }, async (req, { body }) => {
          const b = body as NewBoard;
          const id = b.id ?? randomUUID().slice(0, 8);
          const created = await createBoard(id, b.name, b.columns, commandId(req, "board"));
          return { status: 201, headers: { location: routes.url("/boards/:board", { board: id }) }, body: created };
        }),
      ),
    ),
    ...routes.group("/boards/:board", [
      routes.get(
        "/",
        validate.validated({ params: boardParams }, (req) => {
          const b = requireBoard(req.params.board);
          return { ...b, tasks: listTasks(b.id) };
        }),
      ),
      routes.get(
        "/tasks",
        validate.validated(
          { params: boardParams, query: { type: "object", properties: { column } } },
          (req, { query }) => {
            requireBoard(req.params.board);
            return { tasks: listTasks(req.params.board, (query as { column?: string }).column) };
          },
        ),
      ),
      routes.post(
        "/tasks",
        write(
          validate.validated({ params: boardParams, body: newTask }, async (req, { body }) => {
            const t = body as NewTask;
            const boardId = req.params.board;
            const b = requireBoard(boardId);
            const col = t.column ?? b.columns[0];
            requireColumn(boardId, col);
            const cid = commandId(req, `task:${boardId}`);
            // With an idempotency key, the task id comes from it too, so the retry lands on the same task.
            const taskId = cid ? uuidFrom(cid) : randomUUID();
            const row = await taskCommand(taskId, {
              id: cid,
              type: "create_task_v1",
              data: { boardId, title: t.title, description: t.description, column: col },
            });
            return { status: 201, headers: { location: routes.url("/tasks/:id", { id: taskId }) }, body: row };
          }),
        ),
      ),
      ws.endpoint("/live", {
        onOpen(conn) {
          const boardId = conn.params.board;
          if (!getBoard(boardId)) return false;
          ws.subscribe(conn, boardTopic(boardId));
          void conn.send(JSON.stringify({ type: "hello", boardId })).catch(() => {});
          return true;
        },
      }),
    ]),
    ...routes.group("/tasks/:id", [
      routes.get(
        "/",
        validate.validated({ params: taskParams }, (req) => {
          const t = getTask(req.params.id);
          if (!t) throw new HttpError(404, "task_not_found", "no such task");
          return t;
        }),
      ),
      routes.post(
        "/move",
        write(
          validate.validated({ params: taskParams, body: move }, async (req, { body }) => {
            const to = (body as { column: string }).column;
            requireColumn((await currentTask(req.params.id)).boardId, to);
            return taskCommand(req.params.id, { type: "move_task_v1", data: { column: to } });
          }),
        ),
      ),
      routes.post(
        "/complete",
        write(
          validate.validated({ params: taskParams }, (req) =>
            taskCommand(req.params.id, { type: "complete_task_v1", data: {} }),
          ),
        ),
      ),
      routes.post(
        "/reopen",
        write(
          validate.validated({ params: taskParams }, (req) =>
            taskCommand(req.params.id, { type: "reopen_task_v1", data: {} }),
          ),
        ),
      ),
      routes.del(
        "/",
        write(
          validate.validated({ params: taskParams }, async (req) => {
            const state = await currentTask(req.params.id);
            await taskCommand(req.params.id, { type: "delete_task_v1", data: { reason: "user" } });
            // Best effort: the cleanup job removes whatever is left.
            for (const fileId of state.attachments) await files.remove(fileId).catch(() => false);
            return { status: 204 };
          }),
        ),
      ),
      routes.post(
        "/attachments",
        write(
          validate.validated({ params: taskParams }, async (req) => {
            await currentTask(req.params.id); // refuse before reading the body
            const { files: stored } = await files.receive(req, {
              limits: { maxFileBytes: settings().maxAttachmentBytes, maxFiles: 5 },
            });
            if (stored.length === 0)
              throw new HttpError(400, "no_file", "the form has no file part", { field: "file" });
            let row = null;
            try {
              for (const f of stored) {
                row = await taskCommand(req.params.id, {
                  type: "attach_file_v1",
                  data: { fileId: f.id, name: f.name, size: f.size, contentType: f.mimeType, sha256: f.sha256 },
                });
              }
            } catch (err) {
              // Files not recorded in the store would be orphans: remove them now (the job would, later).
              const attached = new Set((await store.load(task, req.params.id)).state.attachments);
              for (const f of stored) if (!attached.has(f.id)) await files.remove(f.id).catch(() => false);
              throw err;
            }
            return { status: 201, body: row };
          }),
        ),
        // A file upload: the daemon accepts multipart/form-data here (elsewhere only JSON bodies).
        { multipart: true },
      ),
      routes.get(
        "/attachments/:fileId",
        validate.validated(
          {
            params: {
              type: "object",
              required: ["id", "fileId"],
              properties: { id: { type: "string", pattern: UUID }, fileId: { type: "string", pattern: UUID } },
            },
          },
          (req) => {
            const a = getAttachment(req.params.id, req.params.fileId);
            if (!a) throw new HttpError(404, "attachment_not_found", "no such attachment");
            return files.download(a.id, a.name, { contentType: a.contentType });
          },
        ),
      ),
    ]),
    routes.post(
      "/maintenance/cleanup",
      write(async () => {
        if (!cleanupJob) throw new HttpError(503, "cleanup_not_running", "the cleanup job is not running");
        await cleanupJob.trigger();
        return { lastCleanup, stats: cleanupJob.stats };
      }),
    ),
    routes.get("/maintenance", () => ({
      lastCleanup,
      cleanup: cleanupJob ? { ...cleanupJob.stats, nextRunAt: cleanupJob.nextRunAt() } : null,
      live: ws.connectionCount(),
    })),
  ];
}
