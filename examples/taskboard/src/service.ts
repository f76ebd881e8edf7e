/**
 * Use cases: dispatch a command (strong consistency, so the read model already shows it), then tell the board's
 * live subscribers what changed. Shared by the HTTP API and the cleanup job.
 */
import { HttpError, store, ws } from "@hecate/sdk";
import { type Attachment, board, DEFAULT_COLUMNS, type TaskCommand, task } from "./domain.js";
import { getBoard, getTask, type TaskRow } from "./read-model.js";

export const boardTopic = (boardId: string) => `board:${boardId}`;

/** What live subscribers of a board receive (JSON text frames). */
export interface LiveMessage {
  type: "task_created" | "task_moved" | "task_completed" | "task_reopened" | "task_deleted" | "file_attached";
  boardId: string;
  taskId: string;
  /** The task as the read model shows it after the change (null once deleted). */
  task: TaskRow | null;
  position: number;
}

async function run<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw store.asHttpError(err);
  }
}

export async function createBoard(id: string, name: string, columns?: string[], commandId?: string) {
  await run(() =>
    store.dispatch(
      board,
      id,
      { id: commandId, type: "create_board_v1", data: { name, columns } },
      { consistency: "strong" },
    ),
  );
  return getBoard(id)!;
}

/** The board every install starts with (idempotent: same command id every time). */
export async function ensureDefaultBoard(): Promise<void> {
  await store.dispatch(board, "main", {
    id: "init:board:main",
    type: "create_board_v1",
    data: { name: "Main board", columns: DEFAULT_COLUMNS },
  });
}

export function requireBoard(boardId: string) {
  const b = getBoard(boardId);
  if (!b) throw new HttpError(404, "board_not_found", `no board ${JSON.stringify(boardId)}`);
  return b;
}

export function requireColumn(boardId: string, column: string): void {
  const b = requireBoard(boardId);
  if (!b.columns.includes(column))
    throw new HttpError(422, "unknown_column", `board ${boardId} has no column ${JSON.stringify(column)}`, {
      field: "column",
      columns: b.columns,
    });
}

/** Dispatches a task command; on success broadcasts each resulting event to the board's topic. */
export async function taskCommand(taskId: string, command: TaskCommand): Promise<TaskRow | null> {
  const r = await run(() => store.dispatch(task, taskId, command, { consistency: "strong" }));
  const row = getTask(taskId) ?? null;
  for (const e of r.events) {
    const boardId = (e.data as { boardId: string }).boardId;
    const msg: LiveMessage = {
      type: e.type.replace(/_v1$/, "") as LiveMessage["type"],
      boardId,
      taskId,
      task: row,
      position: e.position,
    };
    await ws.broadcast(boardTopic(boardId), JSON.stringify(msg));
  }
  return row;
}

export async function currentTask(taskId: string) {
  const t = (await store.load(task, taskId)).state;
  if (!t.exists || t.deleted) throw new HttpError(404, "task_not_found", "no such task");
  return t;
}

export type { Attachment };
