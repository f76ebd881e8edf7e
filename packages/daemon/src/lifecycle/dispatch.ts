/**
 * The lifecycle's one write path: every command on a plugin's aggregate goes through `PluginDispatcher.dispatch` (the
 * plugin name checked, a process-manager step's context used when given, the crash-recovery test hook fired right
 * after the append).
 */
import { isValidPluginName } from "@hecate/sdk";
import type { Cqrs, DispatchResult, ProcessManagerContext } from "@hecate/store";
import { type PluginCommand, type PluginEvent, pluginAggregate } from "./aggregate.js";
import { LifecycleError } from "./errors.js";

/** Dispatches `cmd` to plugin `name` (through `ctx` inside a process-manager step; `id` makes it idempotent). */
export type PluginDispatch = (
  name: string,
  cmd: PluginCommand,
  ctx?: ProcessManagerContext,
  id?: string,
) => Promise<DispatchResult<PluginEvent>>;

export class PluginDispatcher {
  constructor(
    private readonly cqrs: Cqrs,
    /** Test hook: SIGKILL this process right after appending an event of this type. */
    private readonly crashAfter: string | undefined,
  ) {}

  readonly dispatch: PluginDispatch = async (name, cmd, ctx, id) => {
    if (!isValidPluginName(name))
      throw new LifecycleError("invalid_plugin_name", `invalid plugin name ${JSON.stringify(name)}`, {
        field: "name",
      });
    const command = id ? { ...cmd, id } : cmd;
    const r = ctx
      ? await ctx.dispatch(pluginAggregate, name, command)
      : await this.cqrs.dispatch(pluginAggregate, name, command);
    if (!r.duplicate) for (const e of r.events) await this.crashIfHooked(e.type);
    return r;
  };

  /** The crash-recovery test hook: SIGKILL right after an event of the configured type was appended. */
  async crashIfHooked(type: string): Promise<void> {
    if (this.crashAfter !== type) return;
    process.kill(process.pid, "SIGKILL");
    await new Promise(() => {}); // never continue past the "crash"
  }
}
