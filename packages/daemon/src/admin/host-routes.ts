/**
 * The admin routes of the plugin-host processes, guarded like the rest of the admin API:
 * - `POST /admin/api/hosts/recycle`: replaces the main plugin host with zero downtime (PluginHosts.recycle), e.g. to
 *   free what unloaded `isolation: "shared"` plugins left in it; answers once the old host has drained and exited.
 */
import type { MountedRoute } from "../http/router.js";
import type { RecycleResult } from "../supervisor/plugin-hosts.js";
import type { AdminApi } from "./api.js";
import { ApiError, sendJson } from "./http.js";

export interface HostControl {
  recycle(reason?: string): Promise<RecycleResult>;
}

export function hostRoutes(admin: AdminApi, hosts: HostControl): MountedRoute[] {
  return [
    {
      method: "POST",
      path: "/admin/api/hosts/recycle",
      handler: admin.guarded(async (req, res) => {
        req.resume(); // no body expected; an unread one would stall the connection
        let result: RecycleResult;
        try {
          result = await hosts.recycle("admin request");
        } catch (err) {
          throw new ApiError(409, "recycle_failed", (err as Error).message);
        }
        sendJson(res, 200, result);
      }, true),
    },
  ];
}
