/**
 * The operator's commands on an installed plugin: activate, deactivate, remove (purge), cancel an image pull. A
 * refusal becomes a LifecycleError with the same code whose message says, in the user's words, what state the plugin
 * is in and what to do (not `deactivate_plugin_v1 on plugin-x rejected`; user-messages.ts).
 */
import { CommandRejected, type DispatchResult } from "@hecate/store";
import { type PluginCommand, type PluginEvent, type PluginState, statusName } from "./aggregate.js";
import { LifecycleError } from "./errors.js";
import type { OciFlow } from "./oci-flow.js";
import { rejectionMessage } from "./user-messages.js";

/** What the commands need from the lifecycle service. */
export interface UserCommandsDeps {
  /** Cluster mode: this node's id (the node that took a purge deletes the shared store). */
  nodeId: string | undefined;
  oci: Pick<OciFlow, "cancel">;
  state(name: string): PluginState | undefined;
  /** Runs `fn` after every other operation on this plugin (one at a time per plugin). */
  serial<T>(name: string, fn: () => Promise<T>): Promise<T>;
  dispatch(name: string, cmd: PluginCommand): Promise<DispatchResult<PluginEvent>>;
}

export class UserCommands {
  constructor(private readonly d: UserCommandsDeps) {}

  async activate(name: string): Promise<number> {
    return (await this.run(name, { type: "activate_plugin_v1", data: {} })).position;
  }

  async deactivate(name: string): Promise<number> {
    return (await this.run(name, { type: "deactivate_plugin_v1", data: {} })).position;
  }

  async remove(name: string, purge: boolean): Promise<number> {
    // Cluster: the node that took a purge deletes the plugin's shared store, once (its process manager, steps.ts).
    const metadata = purge && this.d.nodeId !== undefined ? { purgedBy: this.d.nodeId } : undefined;
    const cmd: PluginCommand = { type: "remove_plugin_v1", data: { purge }, ...(metadata ? { metadata } : {}) };
    return (await this.run(name, cmd)).position;
  }

  /** `hecate plugin cancel NAME`: ends the image pull in flight (not_pulling when none). */
  async cancelPull(name: string): Promise<void> {
    await this.d.serial(name, async () => {
      try {
        await this.d.oci.cancel(name);
      } catch (err) {
        if (!(err instanceof CommandRejected)) throw err;
        if (err.code === "not_pulling")
          throw new LifecycleError(
            err.code,
            `plugin ${name} is not pulling an image (it is ${statusName(this.d.state(name)!.status)})`,
          );
        throw this.userError(name, err);
      }
    });
  }

  private async run(name: string, cmd: PluginCommand): Promise<DispatchResult<PluginEvent>> {
    try {
      return await this.d.dispatch(name, cmd);
    } catch (err) {
      if (!(err instanceof CommandRejected)) throw err;
      throw this.userError(name, err, err.details);
    }
  }

  /** The refusal in the user's words, or the refusal itself when its code has none. */
  private userError(name: string, err: CommandRejected, details?: unknown): Error {
    const s = this.d.state(name);
    const message = rejectionMessage(name, err.code, s && statusName(s.status));
    return message ? new LifecycleError(err.code, message, details) : err;
  }
}
