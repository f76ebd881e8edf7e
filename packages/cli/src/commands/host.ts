/**
 * `hecate host recycle`: replaces the main plugin-host process with zero downtime (`POST /admin/api/hosts/recycle`):
 * a new host loads every plugin and takes the new connections, the old one drains and exits. It frees what unloaded
 * or upgraded `isolation: "shared"` plugins left in memory (ES modules cannot be unloaded).
 */
import type { CommandContext } from "./plugin.js";

interface RecycleResult {
  reason: string;
  oldPid?: number;
  newPid?: number;
  switchMs: number;
  ms: number;
  drained: boolean;
  plugins: number;
}

export async function hostRecycleCommand(ctx: CommandContext): Promise<void> {
  const r = await ctx.client.call<RecycleResult>("POST", "/admin/api/hosts/recycle");
  ctx.out.result(r, () => {
    ctx.out.line(
      `plugin host recycled: pid ${r.oldPid ?? "?"} -> ${r.newPid ?? "?"}, ${r.plugins} plugin(s) loaded in the new host, serving after ${r.switchMs} ms, old host gone after ${r.ms} ms`,
    );
    if (!r.drained) ctx.out.line("the old host's last connections were closed at its drain deadline");
  });
}
