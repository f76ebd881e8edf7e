/**
 * The admin API (contract in packages/daemon/openapi.json): plugin lifecycle operations over JSON, the lifecycle
 * event stream (SSE), plugin logs, and the static admin page. Mounted as the router's "admin" system route group.
 */

import { randomUUID } from "node:crypto";
import { copyFile, stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { basename, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import { CommandRejected, type RecordedEvent } from "@hecate/store";
import type { ClusterNode } from "../cluster/cluster-node.js";
import { pluginList } from "../cluster/list.js";
import type { MountedRoute, RouteContext } from "../http/router.js";
import { openEventStream } from "../http/sse.js";
import { serveStatic } from "../http/static.js";
import type { PluginEvent } from "../lifecycle/aggregate.js";
import {
  LifecycleError,
  type LifecycleEvent,
  type LifecycleService,
  type PackageRejectionRecord,
} from "../lifecycle/service.js";
import { SettingsError } from "../lifecycle/settings.js";
import { rejectionMessage } from "../lifecycle/user-messages.js";
import { ADMIN_RESPONSE_HEADERS, type AdminGuard, sessionCookies } from "./auth.js";
import { DownloadError } from "./download.js";
import { ApiError, mediaType, readJson, receiveFile, sendError, sendJson, sendSse } from "./http.js";
import type { LogBook, LogLine } from "./logs.js";
import { SESSION_COOKIE } from "./sessions.js";
import { isUrlRequest, type RefusalOrigin, receiveFromUrl } from "./url-source.js";

export const ADMIN_UI_DIR = fileURLToPath(new URL("../../../admin-ui/", import.meta.url));
export const OPENAPI_FILE = fileURLToPath(new URL("../../../openapi.json", import.meta.url));

export interface AdminApiOptions {
  lifecycle: LifecycleService;
  guard: AdminGuard;
  logs: LogBook;
  /** Where uploads are streamed to (`$HECATE_HOME/run`). */
  incomingDir: string;
  maxUploadBytes?: number;
  /** How long `?wait=loaded` waits (ms), default 120 s. */
  waitTimeoutMs?: number;
  adminUiDir?: string;
  /**
   * The plugin listener's port when the admin has its own (null when they share one): listed so the admin page can
   * link to plugin pages on their origin.
   */
  pluginPort?: () => number | null;
  /** Cluster mode: the list shows every node's status of each plugin. */
  cluster?: ClusterNode;
  /** While this returns an error (the lifecycle store unreachable at boot), every `/admin/api/` route answers it. */
  unavailable?: () => ApiError | undefined;
}

export type Handler = (
  req: IncomingMessage,
  res: ServerResponse,
  params: Record<string, string>,
  ctx: RouteContext,
) => Promise<void> | void;

const LOAD_OUTCOMES: PluginEvent["type"][] = [
  "plugin_load_confirmed_v1",
  "plugin_load_failed_v1",
  "plugin_extract_failed_v1",
  "plugin_removed_v1",
  "plugin_quarantined_v1",
  "oci_pull_failed_v1",
  "oci_pull_cancelled_v1",
];

export class AdminApi {
  private readonly streams = new Set<ServerResponse>();
  private readonly maxUpload: number;
  private readonly waitMs: number;
  private readonly uiDir: string;

  constructor(private readonly o: AdminApiOptions) {
    this.maxUpload = o.maxUploadBytes ?? 256 * 1024 * 1024;
    this.waitMs = o.waitTimeoutMs ?? 120_000;
    this.uiDir = o.adminUiDir ?? ADMIN_UI_DIR;
  }

  routes(): MountedRoute[] {
    const g = (h: Handler, auth = true) => this.guarded(h, auth);
    return [
      {
        method: "GET",
        path: "/admin/api/plugins",
        handler: g(async (_q, res) =>
          sendJson(res, 200, {
            ...(await pluginList(this.o.lifecycle.list(), this.o.cluster)),
            pluginPort: this.o.pluginPort?.() ?? null,
          }),
        ),
      },
      { method: "POST", path: "/admin/api/plugins", handler: g((q, res, _p, c) => this.install(q, res, c)) },
      { method: "GET", path: "/admin/api/plugins/:name", handler: g((_q, res, p) => this.getOne(res, p.name)) },
      {
        method: "DELETE",
        path: "/admin/api/plugins/:name",
        handler: g((_q, res, p, c) => this.remove(res, p.name, c)),
      },
      {
        method: "GET",
        path: "/admin/api/plugins/:name/events",
        handler: g((_q, res, p) => this.pluginEvents(res, p.name)),
      },
      {
        method: "GET",
        path: "/admin/api/plugins/:name/logs",
        handler: g((q, res, p, c) => this.pluginLogs(q, res, p.name, c)),
      },
      {
        method: "POST",
        path: "/admin/api/plugins/:name/activate",
        handler: g((_q, res, p) => this.activate(res, p.name)),
      },
      {
        method: "POST",
        path: "/admin/api/plugins/:name/deactivate",
        handler: g((_q, res, p) => this.deactivate(res, p.name)),
      },
      {
        method: "GET",
        path: "/admin/api/plugins/:name/settings",
        handler: g((_q, res, p) => sendJson(res, 200, this.o.lifecycle.settingsView(p.name))),
      },
      {
        method: "PUT",
        path: "/admin/api/plugins/:name/settings",
        handler: g((q, res, p) => this.putSettings(q, res, p.name)),
      },
      {
        method: "POST",
        path: "/admin/api/plugins/:name/upgrade",
        handler: g((q, res, p, c) => this.upgrade(q, res, p.name, c)),
      },
      { method: "GET", path: "/admin/api/events", handler: g((q, res) => this.eventStream(q, res)) },
      { method: "GET", path: "/admin/api/rejections", handler: g((_q, res, _p, c) => this.rejections(res, c)) },
      {
        method: "GET",
        path: "/admin/api/openapi.json",
        handler: g((q, res) => serveStatic(q, res, dirname(OPENAPI_FILE), basename(OPENAPI_FILE))),
      },
      {
        method: "DELETE",
        path: "/admin/api/sessions",
        handler: g((_q, res) => sendJson(res, 200, { revoked: this.o.guard.sessions.revokeAll() })),
      },
      { method: "GET", path: "/admin/login", handler: g((q, res, _p, c) => this.login(q, res, c), false) },
      { method: "POST", path: "/admin/logout", handler: g((q, res) => this.logout(q, res), false) },
      {
        method: "GET",
        path: "/admin",
        handler: g((_q, res) => {
          res.writeHead(301, { location: "/admin/", "content-length": 0 });
          res.end();
        }, false),
      },
      // Unknown API paths are a 404 JSON error for every method (the page's catch-all below answers GET only).
      {
        method: "*",
        path: "/admin/api/*",
        handler: g((_q, _res, _p, c) => {
          throw new ApiError(404, "not_found", `no route for ${c.pathname}`);
        }),
      },
      { method: "GET", path: "/admin/*", handler: g((q, res, _p, c) => this.page(q, res, c)) },
    ];
  }

  /** Ends every open event/log stream (daemon shutdown). */
  closeStreams(): void {
    for (const res of this.streams) res.end();
    this.streams.clear();
  }

  /** Wraps an admin handler: admin headers, Host/Origin and auth checks, typed JSON errors (also for other route files). */
  guarded(h: Handler, auth: boolean): MountedRoute["handler"] {
    return async (req, res, params, ctx) => {
      // Also set by the admin listeners for every response; here for the admin on a shared port.
      for (const [k, v] of Object.entries(ADMIN_RESPONSE_HEADERS)) res.setHeader(k, v);
      try {
        this.o.guard.checkHostAndOrigin(req);
        if (auth) this.o.guard.checkAuth(req);
        const down = ctx.pathname.startsWith("/admin/api/") ? this.o.unavailable?.() : undefined;
        if (down) throw down;
        if (req.method !== "GET" && req.method !== "HEAD" && !this.o.lifecycle.booted)
          throw new ApiError(503, "not_ready", "the daemon is still recovering; retry when /ready answers 200");
        await h(req, res, params, ctx);
      } catch (err) {
        const e = toApiError(err);
        // Unread request bodies would otherwise stall the keep-alive connection.
        if (!req.complete) req.resume();
        sendError(res, e.status, e.code, e.message, e.details);
      }
    };
  }

  private view(name: string) {
    const v = this.o.lifecycle.view(name);
    if (!v) throw new ApiError(404, "plugin_not_found", rejectionMessage(name, "plugin_not_found", undefined)!);
    return v;
  }

  private getOne(res: ServerResponse, name: string): void {
    const v = this.view(name);
    sendJson(res, 200, { ...v, manifest: this.o.lifecycle.manifest(name) });
  }

  /**
   * Upload body (.tar.gz), JSON {path}, JSON {url, sha256?} or JSON {oci: "oci://…"} (an image: see
   * lifecycle/oci-flow.ts); returns the incoming file and a description of its source, or the image reference.
   * `origin` is filled in as soon as the source is known (for the refusal record).
   */
  private async receiveArchive(
    req: IncomingMessage,
    origin: RefusalOrigin,
  ): Promise<{ file: string; source: string } | { oci: string }> {
    const type = mediaType(req);
    if (type === "application/json") {
      const body = (await readJson(req)) as Record<string, unknown> | null;
      if (body && typeof body === "object" && typeof body.oci === "string") return { oci: body.oci };
      if (body && isUrlRequest(body)) return receiveFromUrl(body, origin, this.o.incomingDir, this.maxUpload);
      const path = body && typeof body === "object" ? body.path : undefined;
      if (typeof path !== "string" || !isAbsolute(path))
        throw new ApiError(
          400,
          "invalid_body",
          'JSON body must be {"path": "/absolute/file.tar.gz"}, {"url": "https://…/file.tar.gz", "sha256"?: "<hex>"} or {"oci": "oci://…"}',
          {
            field: "path",
          },
        );
      const st = await stat(path).catch(() => null);
      if (!st?.isFile()) throw new ApiError(400, "invalid_path", `no such file: ${path}`, { field: "path" });
      if (st.size > this.maxUpload)
        throw new ApiError(413, "body_too_large", `package larger than ${this.maxUpload} bytes`);
      // Copied, never moved: the operator's file stays where it is.
      const file = join(this.o.incomingDir, `incoming-${randomUUID()}.tar.gz`);
      await copyFile(path, file);
      return { file, source: path };
    }
    if (type !== "application/gzip" && type !== "application/octet-stream" && type !== "application/x-gzip")
      throw new ApiError(
        415,
        "unsupported_media_type",
        'send the package as application/gzip (or application/octet-stream), or JSON {"path": ...}',
        { field: "content-type" },
      );
    const file = await receiveFile(req, this.o.incomingDir, this.maxUpload);
    return { file, source: "upload" };
  }

  /** receiveArchive, with a refused body (too large, wrong type, bad path) recorded like any refused package. */
  private async receiveOrRefuse(req: IncomingMessage, op: "install" | "upgrade", plugin: string | null) {
    const origin: RefusalOrigin = {
      source: mediaType(req) === "application/json" ? "path" : "upload",
    };
    try {
      return await this.receiveArchive(req, origin);
    } catch (err) {
      // A download refused for its content (pin mismatch) names the whole file: its digest goes into the record.
      const archive = err instanceof DownloadError ? err.file : undefined;
      throw await this.o.lifecycle.refuse(err, { op, ...origin, archive, plugin });
    }
  }

  private async install(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const wait = waitMode(ctx);
    const got = await this.receiveOrRefuse(req, "install", null);
    const { name, position } =
      "oci" in got
        ? await this.o.lifecycle.installOci(got.oci, "install")
        : await this.o.lifecycle.install(got.file, got.source);
    if (wait === "none") return sendJson(res, 202, this.view(name));
    const outcome = await this.o.lifecycle.waitFor(name, position, LOAD_OUTCOMES, this.waitMs);
    this.reply(res, name, outcome, 201);
  }

  /** `{values: {...}, unset: [...]}`: see LifecycleService.updateSettings (400 with the field errors when invalid). */
  private async putSettings(req: IncomingMessage, res: ServerResponse, name: string): Promise<void> {
    this.view(name);
    if (mediaType(req) !== "application/json")
      throw new ApiError(415, "unsupported_media_type", "send the settings as application/json", {
        field: "content-type",
      });
    const body = (await readJson(req)) as { values?: unknown; unset?: unknown } | null;
    if (!body || typeof body !== "object" || Array.isArray(body))
      throw new ApiError(400, "invalid_body", 'JSON body must be {"values": {...}, "unset": ["field", ...]}', [
        { field: "", message: "must be an object" },
      ]);
    const values = body.values ?? {};
    const unset = body.unset ?? [];
    const shape: { field: string; message: string }[] = [];
    if (typeof values !== "object" || values === null || Array.isArray(values))
      shape.push({ field: "values", message: "must be an object" });
    if (!Array.isArray(unset) || unset.some((k) => typeof k !== "string"))
      shape.push({ field: "unset", message: "must be an array of field names" });
    const extra = Object.keys(body).filter((k) => k !== "values" && k !== "unset");
    for (const k of extra) shape.push({ field: k, message: "unknown property (expected values, unset)" });
    if (shape.length) throw new ApiError(400, "invalid_body", "invalid settings request", shape);
    const r = await this.o.lifecycle.updateSettings(name, {
      values: values as Record<string, unknown>,
      unset: unset as string[],
    });
    sendJson(res, 200, { ...r.view, applied: r.applied, ...(r.applyError ? { applyError: r.applyError } : {}) });
  }

  private async upgrade(req: IncomingMessage, res: ServerResponse, name: string, ctx: RouteContext): Promise<void> {
    this.view(name);
    const got = await this.receiveOrRefuse(req, "upgrade", name);
    const options = { resetSettings: queryFlag(ctx.query.reset_settings) };
    const { position } =
      "oci" in got
        ? await this.o.lifecycle.installOci(got.oci, "upgrade", name, options)
        : await this.o.lifecycle.upgrade(name, got.file, got.source, options);
    const outcomes: PluginEvent["type"][] = this.o.lifecycle.loadsAfterExtract(name)
      ? LOAD_OUTCOMES
      : ["plugin_package_extracted_v1", "plugin_extract_failed_v1", "plugin_removed_v1", ...OCI_OUTCOMES];
    const outcome = await this.o.lifecycle.waitFor(name, position, outcomes, this.waitMs);
    this.reply(res, name, outcome, 200);
  }

  private async activate(res: ServerResponse, name: string): Promise<void> {
    this.view(name);
    const position = await this.o.lifecycle.activate(name);
    const outcome = await this.o.lifecycle.waitFor(name, position, LOAD_OUTCOMES, this.waitMs);
    this.reply(res, name, outcome, 200);
  }

  private async deactivate(res: ServerResponse, name: string): Promise<void> {
    this.view(name);
    const position = await this.o.lifecycle.deactivate(name);
    await this.o.lifecycle.settled(position, this.waitMs); // routes are gone when we answer
    sendJson(res, 200, this.view(name));
  }

  private async remove(res: ServerResponse, name: string, ctx: RouteContext): Promise<void> {
    this.view(name);
    const purge = queryFlag(ctx.query.purge);
    const position = await this.o.lifecycle.remove(name, purge);
    await this.o.lifecycle.settled(position, this.waitMs); // files are gone when we answer
    this.o.logs.forget(name);
    sendJson(res, 200, { removed: true, purged: purge });
  }

  /** 2xx with the view when the outcome is a success, else 422 with the failure's code. */
  private reply(res: ServerResponse, name: string, outcome: RecordedEvent, okStatus: number): void {
    const view = this.view(name);
    const d = outcome.data as { code?: string; message?: string; stage?: string; details?: unknown };
    switch (outcome.type) {
      case "plugin_extract_failed_v1":
        sendError(res, 422, d.code ?? "extract_failed", d.message ?? "extraction failed", {
          stage: "extract",
          ...(d.details !== undefined ? { details: d.details } : {}),
          plugin: view,
        });
        return;
      case "plugin_load_failed_v1":
        sendError(res, 422, "load_failed", d.message ?? "load failed", { stage: d.stage, plugin: view });
        return;
      case "plugin_quarantined_v1":
        sendError(res, 422, "quarantined", (outcome.data as { reason?: string }).reason ?? "quarantined", {
          stage: "host",
          plugin: view,
        });
        return;
      case "plugin_removed_v1":
        sendError(res, 409, "plugin_removed", `plugin ${name} was removed meanwhile`);
        return;
      case "oci_pull_failed_v1":
        sendError(res, 422, d.code ?? "pull_failed", d.message ?? "image pull failed", { stage: "pull", plugin: view });
        return;
      case "oci_pull_cancelled_v1":
        sendError(res, 409, "pull_cancelled", `the image pull of ${name} was cancelled`, {
          stage: "pull",
          plugin: view,
        });
        return;
      default:
        sendJson(res, okStatus, view);
    }
  }

  private async pluginEvents(res: ServerResponse, name: string): Promise<void> {
    this.view(name);
    sendJson(res, 200, {
      events: (await this.o.lifecycle.events(name)).map((e) => ({
        type: e.type,
        revision: e.revision,
        position: e.position,
        data: e.data,
        createdAt: e.createdAt,
      })),
    });
  }

  private pluginLogs(req: IncomingMessage, res: ServerResponse, name: string, ctx: RouteContext): void {
    this.view(name);
    const tail = Math.min(Math.max(Number(ctx.query.tail ?? 100) || 0, 0), 1000);
    const lines = this.o.logs.tail(name, tail);
    if (!queryFlag(ctx.query.follow)) {
      sendJson(res, 200, { logs: lines });
      return;
    }
    if (!this.openStream(req, res)) return;
    for (const l of lines) sendSse(res, "log", l);
    const onLine = (l: LogLine) => {
      if (l.plugin === name) sendSse(res, "log", l);
    };
    this.o.logs.on("line", onLine);
    res.on("close", () => this.o.logs.off("line", onLine));
  }

  private eventStream(req: IncomingMessage, res: ServerResponse): void {
    if (!this.openStream(req, res)) return;
    const onEvent = (e: LifecycleEvent) => sendSse(res, "lifecycle", e);
    const onRejection = (r: PackageRejectionRecord) => sendSse(res, "rejection", r);
    this.o.lifecycle.on("event", onEvent);
    this.o.lifecycle.on("rejection", onRejection);
    res.on("close", () => {
      this.o.lifecycle.off("event", onEvent);
      this.o.lifecycle.off("rejection", onRejection);
    });
  }

  /** Recent refused packages, newest first (?limit=1..500, default 50). */
  private async rejections(res: ServerResponse, ctx: RouteContext): Promise<void> {
    const raw = ctx.query.limit ?? "50";
    const limit = Number(raw);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500)
      throw new ApiError(400, "invalid_query", "limit must be an integer from 1 to 500", { field: "limit" });
    sendJson(res, 200, { rejections: await this.o.lifecycle.rejections(limit) });
  }

  /** Starts an event stream; false for HEAD, which gets the stream's head and ends (nothing to follow). */
  private openStream(req: IncomingMessage, res: ServerResponse): boolean {
    return openEventStream(req, res, this.streams);
  }

  /** `?token=<admin token>` -> a new session in the cookie (the token itself never goes into a cookie). */
  private login(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): void {
    const token = typeof ctx.query.token === "string" ? ctx.query.token : "";
    if (!this.o.guard.trustedPeer(req) && !this.o.guard.matches(token))
      throw new ApiError(401, "unauthorized", "wrong or missing token");
    const id = this.o.guard.sessions.create();
    const maxAge = Math.floor(this.o.guard.sessions.ttlMs / 1000);
    res.writeHead(303, {
      location: "/admin/",
      "set-cookie": `${SESSION_COOKIE}=${id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=${maxAge}`,
      "content-length": 0,
    });
    res.end();
  }

  /** Ends the sessions named by the request's cookies (every same-named one) and clears the cookie. */
  private logout(req: IncomingMessage, res: ServerResponse): void {
    let revoked = 0;
    for (const id of sessionCookies(req)) if (this.o.guard.sessions.revoke(id)) revoked++;
    req.resume();
    sendJson(
      res,
      200,
      { loggedOut: true, revoked },
      { "set-cookie": `${SESSION_COOKIE}=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0` },
    );
  }

  private async page(req: IncomingMessage, res: ServerResponse, ctx: RouteContext): Promise<void> {
    const rel = ctx.pathname.slice("/admin/".length);
    if (rel === "api" || rel.startsWith("api/")) throw new ApiError(404, "not_found", `no route for ${ctx.pathname}`);
    await serveStatic(req, res, this.uiDir, rel);
  }
}

function waitMode(ctx: RouteContext): "loaded" | "none" {
  const w = ctx.query.wait;
  if (w === undefined || w === "loaded") return "loaded";
  if (w === "none") return "none";
  throw new ApiError(400, "invalid_query", 'wait must be "loaded" or "none"', { field: "wait" });
}

const OCI_OUTCOMES: PluginEvent["type"][] = ["oci_pull_failed_v1", "oci_pull_cancelled_v1"];

const REJECTION_STATUS: Record<string, [number, string?]> = {
  plugin_not_installed: [404, "plugin_not_found"],
  plugin_not_found: [404],
  plugin_already_installed: [409],
  plugin_already_activated: [409],
  plugin_not_activated: [409],
  plugin_not_extracted: [409],
  stale_command: [409],
  invalid_plugin_name: [400],
  invalid_command: [400],
  name_mismatch: [422],
  settings_incompatible: [422],
  not_pulling: [409],
  already_pulling: [409],
  invalid_reference: [400],
  digest_required: [422],
  digest_mismatch: [422],
  manifest_unknown: [422],
  no_plugin_manifest: [422],
  unsupported_image: [422],
  invalid_manifest: [422],
  unauthorized: [422],
  registry_unreachable: [502],
  registry_error: [502],
  timeout: [504],
};

/** Maps every error of the lifecycle, the package module and the store to a typed HTTP error. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof SettingsError)
    return new ApiError(err.code === "invalid_settings" ? 400 : 422, err.code, err.message, err.details);
  if (err instanceof CommandRejected || err instanceof LifecycleError) {
    const [status, code] = REJECTION_STATUS[err.code] ?? [409];
    return new ApiError(status, code ?? err.code, err.message, err.details);
  }
  const e = err as Error & { code?: unknown; details?: unknown };
  if (e?.name === "PackageError" && typeof e.code === "string") return new ApiError(422, e.code, e.message, e.details);
  if (err instanceof DownloadError) return new ApiError(err.status, err.code, err.message, err.details);
  if ((e?.name === "OciInstallError" || e?.name === "RegistryConfigError") && typeof e.code === "string") {
    const [status] = REJECTION_STATUS[e.code] ?? [422];
    return new ApiError(e.code === "invalid_registry" || e.code === "invalid_body" ? 400 : status, e.code, e.message);
  }
  return new ApiError(500, "internal_error", e?.message ?? String(err));
}

/** A yes/no query parameter (`?purge=1`, `?follow=true`, `?x=yes`): the same spellings everywhere. */
function queryFlag(value: string | string[] | undefined): boolean {
  return ["1", "true", "yes"].includes(String(value ?? "").toLowerCase());
}
