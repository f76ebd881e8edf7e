/**
 * How a plugin host hands a routed request or upgrade to the SDK's exchanges: the same for a worker plugin
 * (worker/plugin-worker.ts, over a MessageChannel) and a shared one (host/shared/shared-plugin.ts, a direct call).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { HttpMethod } from "@hecate/sdk";
import type { RouteAnnouncement } from "@hecate/sdk/protocol";
import type { HttpExchanges } from "@hecate/sdk/runtime/http-exchanges";
import { rejectUpgrade, type WsConnections } from "@hecate/sdk/runtime/ws-connections";
import type { RouteContext } from "../http/router.js";
import { sendJsonError } from "../http/static.js";

/** `serving`: the plugin takes requests (ready, or stopping while it drains); otherwise 503 with Retry-After. */
export function dispatchRequest(
  http: HttpExchanges,
  plugin: string,
  serving: boolean,
  route: RouteAnnouncement,
  req: IncomingMessage,
  res: ServerResponse,
  params: Record<string, string>,
  ctx: RouteContext,
): void {
  if (!serving) {
    res.setHeader("retry-after", "1");
    sendJsonError(res, 503, "plugin_unavailable", `plugin ${plugin} is not running`);
    return;
  }
  http.dispatch(req, res, {
    routeId: route.id,
    method: req.method as HttpMethod,
    path: ctx.path,
    params,
    query: ctx.query,
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
  });
}

/** `ready`: the plugin accepts new WebSocket connections; otherwise the upgrade gets 503. */
export function openUpgrade(
  ws: WsConnections,
  ready: boolean,
  route: RouteAnnouncement,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  params: Record<string, string>,
  ctx: RouteContext,
): void {
  if (!ready) {
    rejectUpgrade(socket, 503, "Service Unavailable");
    return;
  }
  const fields = {
    routeId: route.id,
    path: ctx.path,
    params,
    query: ctx.query,
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress,
  };
  ws.open(req, socket, head, fields, route.maxPayload);
}
