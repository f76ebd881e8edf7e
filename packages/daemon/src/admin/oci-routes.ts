/**
 * Admin routes of OCI installs (guarded like the rest of the admin API):
 * - `POST /admin/api/plugins/{name}/cancel`: ends the plugin's image pull (cancel_oci_pull_v1; 409 not_pulling);
 * - `GET /admin/api/registries`, `PUT` / `DELETE /admin/api/registries/{registry}`: per-registry credentials and the
 *   plain-HTTP setting in `$HECATE_HOME/registries.json` (container/registry-config.ts). A password is accepted, stored
 *   0600 and never answered, logged or recorded: answers say `passwordSet` only.
 * The install itself is `POST /admin/api/plugins` with JSON `{"oci": "oci://…"}` (api.ts).
 */
import type { IncomingMessage } from "node:http";
import { describeRegistries, removeRegistry, setRegistry } from "../container/registry-config.js";
import type { MountedRoute } from "../http/router.js";
import type { LifecycleService } from "../lifecycle/service.js";
import type { AdminApi } from "./api.js";
import { ApiError, mediaType, readJson, sendJson } from "./http.js";

export function ociRoutes(admin: AdminApi, lifecycle: LifecycleService, home: string): MountedRoute[] {
  const g = (h: Parameters<AdminApi["guarded"]>[0]) => admin.guarded(h, true);
  return [
    {
      method: "POST",
      path: "/admin/api/plugins/:name/cancel",
      handler: g(async (_req, res, p) => {
        if (!lifecycle.view(p.name)) throw new ApiError(404, "plugin_not_found", `plugin ${p.name} is not installed`);
        await lifecycle.cancelPull(p.name);
        sendJson(res, 200, lifecycle.view(p.name));
      }),
    },
    {
      method: "GET",
      path: "/admin/api/registries",
      handler: g((_req, res) => sendJson(res, 200, { registries: describeRegistries(home) })),
    },
    {
      method: "PUT",
      path: "/admin/api/registries/:registry",
      handler: g(async (req, res, p) => sendJson(res, 200, setRegistry(home, p.registry, await registryBody(req)))),
    },
    {
      method: "DELETE",
      path: "/admin/api/registries/:registry",
      handler: g((_req, res, p) => {
        if (!removeRegistry(home, p.registry))
          throw new ApiError(404, "registry_not_found", `no settings for registry ${p.registry}`);
        sendJson(res, 200, { removed: true });
      }),
    },
  ];
}

/** `{username, password}` (credentials; `username: null` forgets them) and/or `{insecure: boolean}`. */
async function registryBody(
  req: IncomingMessage,
): Promise<{ username?: string | null; password?: string; insecure?: boolean }> {
  if (mediaType(req) !== "application/json")
    throw new ApiError(415, "unsupported_media_type", "send the registry settings as application/json", {
      field: "content-type",
    });
  const body = (await readJson(req)) as Record<string, unknown> | null;
  if (!body || typeof body !== "object" || Array.isArray(body))
    throw new ApiError(400, "invalid_body", 'JSON body must be {"username", "password"} and/or {"insecure": bool}');
  const { username, password, insecure } = body;
  const extra = Object.keys(body).filter((k) => !["username", "password", "insecure"].includes(k));
  if (extra.length) throw new ApiError(400, "invalid_body", `unknown property ${extra[0]}`, { field: extra[0] });
  if (username !== undefined && username !== null && (typeof username !== "string" || username === ""))
    throw new ApiError(400, "invalid_body", "username must be a non-empty string (or null)", { field: "username" });
  if (password !== undefined && typeof password !== "string")
    throw new ApiError(400, "invalid_body", "password must be a string", { field: "password" });
  if (insecure !== undefined && typeof insecure !== "boolean")
    throw new ApiError(400, "invalid_body", "insecure must be a boolean", { field: "insecure" });
  return {
    ...(username !== undefined ? { username: username as string | null } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(insecure !== undefined ? { insecure } : {}),
  };
}
