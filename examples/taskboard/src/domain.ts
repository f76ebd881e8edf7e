/**
 * The task board's write side: two aggregates in the plugin's event store.
 *   board-{id}: create_board_v1 -> board_created_v1
 *   task-{id}:  create_task_v1, move_task_v1, complete_task_v1, reopen_task_v1, delete_task_v1, attach_file_v1
 * Every task event carries its boardId, so the read model and the live updates know the board without a lookup.
 */
import type { store } from "@hecate/sdk";
import { reject } from "@hecate/sdk/store";

export const DEFAULT_COLUMNS = ["todo", "doing", "done"];
export const MAX_ATTACHMENTS = 20;

export interface BoardState {
  exists: boolean;
  name: string;
  columns: string[];
}

export type BoardCommand = { type: "create_board_v1"; data: { name: string; columns?: string[] }; id?: string };
export type BoardEvent = { type: "board_created_v1"; data: { name: string; columns: string[] } };

export const board: store.AggregateDefinition<BoardState, BoardCommand, BoardEvent> = {
  name: "board",
  initialState: { exists: false, name: "", columns: [] },
  evolve(state, event) {
    if (event.type !== "board_created_v1") return state;
    const d = event.data as BoardEvent["data"];
    return { exists: true, name: d.name, columns: d.columns };
  },
  decide(cmd, state) {
    if (state.exists) return reject("board_exists", "a board with this id already exists");
    const columns = cmd.data.columns?.length ? cmd.data.columns : DEFAULT_COLUMNS;
    if (new Set(columns).size !== columns.length) return reject("duplicate_column", "column names must be unique");
    return [{ type: "board_created_v1", data: { name: cmd.data.name, columns } }];
  },
};

export interface Attachment {
  fileId: string;
  name: string;
  size: number;
  contentType: string;
  sha256: string;
}

export interface TaskState {
  exists: boolean;
  deleted: boolean;
  boardId: string;
  column: string;
  completed: boolean;
  attachments: string[];
}

export type TaskCommand =
  | {
      type: "create_task_v1";
      data: { boardId: string; title: string; description: string; column: string };
      id?: string;
    }
  | { type: "move_task_v1"; data: { column: string }; id?: string }
  | { type: "complete_task_v1"; data: Record<string, never>; id?: string }
  | { type: "reopen_task_v1"; data: Record<string, never>; id?: string }
  | { type: "delete_task_v1"; data: { reason: "user" | "retention" }; id?: string }
  | { type: "attach_file_v1"; data: Attachment; id?: string };

export type TaskEvent =
  | { type: "task_created_v1"; data: { boardId: string; title: string; description: string; column: string } }
  | { type: "task_moved_v1"; data: { boardId: string; from: string; to: string } }
  | { type: "task_completed_v1"; data: { boardId: string } }
  | { type: "task_reopened_v1"; data: { boardId: string } }
  | { type: "task_deleted_v1"; data: { boardId: string; reason: string; attachments: string[] } }
  | { type: "file_attached_v1"; data: { boardId: string } & Attachment };

export const TASK_EVENT_TYPES = [
  "task_created_v1",
  "task_moved_v1",
  "task_completed_v1",
  "task_reopened_v1",
  "task_deleted_v1",
  "file_attached_v1",
];

export const task: store.AggregateDefinition<TaskState, TaskCommand, TaskEvent> = {
  name: "task",
  initialState: { exists: false, deleted: false, boardId: "", column: "", completed: false, attachments: [] },
  evolve(state, event) {
    const d = event.data as Record<string, unknown>;
    switch (event.type) {
      case "task_created_v1":
        return { ...state, exists: true, boardId: String(d.boardId), column: String(d.column) };
      case "task_moved_v1":
        return { ...state, column: String(d.to) };
      case "task_completed_v1":
        return { ...state, completed: true };
      case "task_reopened_v1":
        return { ...state, completed: false };
      case "task_deleted_v1":
        return { ...state, deleted: true };
      case "file_attached_v1":
        return { ...state, attachments: [...state.attachments, String(d.fileId)] };
      default:
        return state;
    }
  },
  decide(cmd, s) {
    if (cmd.type === "create_task_v1") {
      if (s.exists) return reject("task_exists", "a task with this id already exists");
      return [{ type: "task_created_v1", data: { ...cmd.data } }];
    }
    if (!s.exists || s.deleted) return reject("task_not_found", "no such task");
    const boardId = s.boardId;
    switch (cmd.type) {
      case "move_task_v1":
        if (cmd.data.column === s.column) return []; // already there: nothing happened, nothing to record
        return [{ type: "task_moved_v1", data: { boardId, from: s.column, to: cmd.data.column } }];
      case "complete_task_v1":
        if (s.completed) return reject("task_already_completed", "the task is already completed");
        return [{ type: "task_completed_v1", data: { boardId } }];
      case "reopen_task_v1":
        if (!s.completed) return reject("task_not_completed", "the task is not completed");
        return [{ type: "task_reopened_v1", data: { boardId } }];
      case "delete_task_v1":
        return [{ type: "task_deleted_v1", data: { boardId, reason: cmd.data.reason, attachments: s.attachments } }];
      case "attach_file_v1":
        if (s.attachments.length >= MAX_ATTACHMENTS)
          return reject("too_many_attachments", `a task holds at most ${MAX_ATTACHMENTS} attachments`, {
            max: MAX_ATTACHMENTS,
          });
        return [{ type: "file_attached_v1", data: { boardId, ...cmd.data } }];
    }
  },
};
