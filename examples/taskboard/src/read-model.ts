/**
 * The read side: one projection ("board") into the plugin's SQLite read model (`{paths.sqlite}/taskboard.sqlite`).
 * Each event is applied in the same transaction as the projection's checkpoint (see @hecate/store), so the tables
 * below never miss or double an event, even across crashes.
 */
import { store } from "@hecate/sdk";
import { TASK_EVENT_TYPES } from "./domain.js";

export const PROJECTION = "board";

export type BoardRow = {
  id: string;
  name: string;
  columns: string[];
  createdAt: string;
};

export type AttachmentRow = {
  id: string;
  name: string;
  size: number;
  contentType: string;
  sha256: string;
  createdAt: string;
};

export type TaskRow = {
  id: string;
  boardId: string;
  title: string;
  description: string;
  column: string;
  completedAt: string | null;
  createdAt: string;
  updatedAt: string;
  attachments: AttachmentRow[];
};

const idOf = (stream: string) => stream.slice(stream.indexOf("-") + 1);

export function startReadModel(): store.Projection {
  return store.projection({
    name: PROJECTION,
    file: "taskboard",
    types: ["board_created_v1", ...TASK_EVENT_TYPES],
    setup(db) {
      db.exec(`
        CREATE TABLE IF NOT EXISTS boards (
          id TEXT PRIMARY KEY, name TEXT NOT NULL, columns TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS tasks (
          id TEXT PRIMARY KEY, board_id TEXT NOT NULL, title TEXT NOT NULL, description TEXT NOT NULL,
          column_name TEXT NOT NULL, completed_at TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS tasks_by_board ON tasks (board_id, created_at);
        CREATE INDEX IF NOT EXISTS tasks_by_completion ON tasks (completed_at) WHERE completed_at IS NOT NULL;
        CREATE TABLE IF NOT EXISTS attachments (
          id TEXT PRIMARY KEY, task_id TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL,
          content_type TEXT NOT NULL, sha256 TEXT NOT NULL, created_at TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS attachments_by_task ON attachments (task_id);`);
    },
    apply(db, e) {
      const d = e.data as Record<string, unknown>;
      const id = idOf(e.stream);
      const at = e.createdAt;
      switch (e.type) {
        case "board_created_v1":
          db.prepare("INSERT INTO boards (id, name, columns, created_at) VALUES (?, ?, ?, ?)").run(
            id,
            d.name,
            JSON.stringify(d.columns),
            at,
          );
          return;
        case "task_created_v1":
          db.prepare(
            `INSERT INTO tasks (id, board_id, title, description, column_name, completed_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, NULL, ?, ?)`,
          ).run(id, d.boardId, d.title, d.description, d.column, at, at);
          return;
        case "task_moved_v1":
          db.prepare("UPDATE tasks SET column_name = ?, updated_at = ? WHERE id = ?").run(d.to, at, id);
          return;
        case "task_completed_v1":
          db.prepare("UPDATE tasks SET completed_at = ?, updated_at = ? WHERE id = ?").run(at, at, id);
          return;
        case "task_reopened_v1":
          db.prepare("UPDATE tasks SET completed_at = NULL, updated_at = ? WHERE id = ?").run(at, id);
          return;
        case "task_deleted_v1":
          db.prepare("DELETE FROM tasks WHERE id = ?").run(id);
          db.prepare("DELETE FROM attachments WHERE task_id = ?").run(id);
          return;
        case "file_attached_v1":
          db.prepare(
            `INSERT INTO attachments (id, task_id, name, size, content_type, sha256, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)`,
          ).run(d.fileId, id, d.name, d.size, d.contentType, d.sha256, at);
          db.prepare("UPDATE tasks SET updated_at = ? WHERE id = ?").run(at, id);
          return;
      }
    },
  });
}

interface RawBoard {
  id: string;
  name: string;
  columns: string;
  created_at: string;
}

function toBoard(r: RawBoard): BoardRow {
  return { id: r.id, name: r.name, columns: JSON.parse(r.columns) as string[], createdAt: r.created_at };
}

export function listBoards(): BoardRow[] {
  return store.query<RawBoard>(PROJECTION, "SELECT * FROM boards ORDER BY created_at, id").map(toBoard);
}

export function getBoard(id: string): BoardRow | undefined {
  const r = store.queryOne<RawBoard>(PROJECTION, "SELECT * FROM boards WHERE id = ?", id);
  return r && toBoard(r);
}

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

function toAttachment(a: RawAttachment): AttachmentRow {
  return {
    id: a.id,
    name: a.name,
    size: a.size,
    contentType: a.content_type,
    sha256: a.sha256,
    createdAt: a.created_at,
  };
}

function toTasks(rows: RawTask[], attachments: RawAttachment[]): TaskRow[] {
  const byTask = new Map<string, AttachmentRow[]>();
  for (const a of attachments) {
    const list = byTask.get(a.task_id) ?? [];
    list.push(toAttachment(a));
    byTask.set(a.task_id, list);
  }
  return rows.map((t) => ({
    id: t.id,
    boardId: t.board_id,
    title: t.title,
    description: t.description,
    column: t.column_name,
    completedAt: t.completed_at,
    createdAt: t.created_at,
    updatedAt: t.updated_at,
    attachments: byTask.get(t.id) ?? [],
  }));
}

export function listTasks(boardId: string, column?: string): TaskRow[] {
  const rows = column
    ? store.query<RawTask>(
        PROJECTION,
        "SELECT * FROM tasks WHERE board_id = ? AND column_name = ? ORDER BY created_at, id",
        boardId,
        column,
      )
    : store.query<RawTask>(PROJECTION, "SELECT * FROM tasks WHERE board_id = ? ORDER BY created_at, id", boardId);
  const attachments = store.query<RawAttachment>(
    PROJECTION,
    "SELECT a.* FROM attachments a JOIN tasks t ON t.id = a.task_id WHERE t.board_id = ? ORDER BY a.created_at, a.id",
    boardId,
  );
  return toTasks(rows, attachments);
}

export function getTask(id: string): TaskRow | undefined {
  const t = store.queryOne<RawTask>(PROJECTION, "SELECT * FROM tasks WHERE id = ?", id);
  if (!t) return undefined;
  const attachments = store.query<RawAttachment>(
    PROJECTION,
    "SELECT * FROM attachments WHERE task_id = ? ORDER BY created_at, id",
    id,
  );
  return toTasks([t], attachments)[0];
}

export function getAttachment(taskId: string, fileId: string): AttachmentRow | undefined {
  const a = store.queryOne<RawAttachment>(
    PROJECTION,
    "SELECT * FROM attachments WHERE id = ? AND task_id = ?",
    fileId,
    taskId,
  );
  return a && toAttachment(a);
}

/** Tasks completed before `cutoff` (ISO), for the retention cleanup. */
export function completedBefore(cutoff: string, limit: number): { id: string; boardId: string }[] {
  return store.query<{ id: string; boardId: string }>(
    PROJECTION,
    "SELECT id, board_id AS boardId FROM tasks WHERE completed_at IS NOT NULL AND completed_at < ? ORDER BY completed_at LIMIT ?",
    cutoff,
    limit,
  );
}

/** Every attachment id the read model still references. */
export function referencedFileIds(): Set<string> {
  return new Set(store.query<{ id: string }>(PROJECTION, "SELECT id FROM attachments").map((r) => r.id));
}
