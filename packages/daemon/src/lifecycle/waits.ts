/**
 * "Wait until it is done" for the admin API's answers: the first outcome event of a plugin after a position
 * (`waitFor`), or the process manager having carried out everything up to one (`settled`).
 */
import type { EventEmitter } from "node:events";
import type { EventStore, RecordedEvent, Subscription } from "@hecate/store";
import type { PluginEvent } from "./aggregate.js";
import { LifecycleError } from "./errors.js";
import { type LifecycleEvent, STREAM_PREFIX } from "./views.js";

/** What the waits need from the lifecycle service. */
export interface WaitDeps {
  store: EventStore;
  /** Cluster mode: an outcome may be another node's. */
  cluster: boolean;
  /** The process manager, once started. */
  pm(): Pick<Subscription, "caughtUp"> | undefined;
  /** Resolves once the in-memory views have folded everything up to `position`. */
  folded(position: number): Promise<void>;
  /** The service: its `event`s (LifecycleEvent) wake the waiters. */
  events: Pick<EventEmitter, "on" | "off">;
}

export class LifecycleWaits {
  constructor(private readonly d: WaitDeps) {}

  /**
   * Resolves with the first event of `types` on the plugin's stream after `afterPosition` (checks what is stored,
   * then waits for the live feed), or rejects with LifecycleError("timeout").
   */
  waitFor(
    name: string,
    afterPosition: number,
    types: PluginEvent["type"][],
    timeoutMs: number,
  ): Promise<RecordedEvent> {
    const find = async () =>
      (await this.d.store.readStream(STREAM_PREFIX + name, { direction: "backward", limit: 100 }))
        .filter((e) => e.position > afterPosition && types.includes(e.type as PluginEvent["type"]))
        .at(-1);
    // Resolved only once the in-memory views have folded the event too, so the caller's view() is current. Cluster:
    // the outcome may be another node's; this node's own steps up to it are awaited too (bounded by the timeout), so
    // the node that handled a command serves its result when it answers.
    const started = Date.now();
    const folded = async (e: RecordedEvent): Promise<RecordedEvent> => {
      const pm = this.d.pm();
      if (this.d.cluster && pm) await withTimeout(pm.caughtUp(e.position), timeoutMs - (Date.now() - started));
      await this.d.folded(e.position);
      // Cluster: another node's load failure may come first; this node's own step is done by now, and when it (or
      // any node) loaded the plugin since, that confirm is the answer (see LifecycleSteps.loadAndConfirm).
      if (this.d.cluster && e.type === "plugin_load_failed_v1" && types.includes("plugin_load_confirmed_v1")) {
        const confirmed = (await this.d.store.readStream(STREAM_PREFIX + name, { direction: "backward", limit: 100 }))
          .filter((x) => x.position > e.position && x.type === "plugin_load_confirmed_v1")
          .at(-1);
        if (confirmed) await this.d.folded(confirmed.position);
        return confirmed ?? e;
      }
      return e;
    };
    return new Promise((resolve, reject) => {
      let finished = false;
      const check = () =>
        find().then(
          (found) => {
            if (!found || finished) return;
            done();
            resolve(folded(found));
          },
          (err) => {
            done();
            reject(err);
          },
        );
      const onEvent = (e: LifecycleEvent) => {
        if (e.plugin !== name || e.position <= afterPosition) return;
        void check();
      };
      const timer = setTimeout(() => {
        done();
        reject(new LifecycleError("timeout", `plugin ${name}: no ${types.join("/")} within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        finished = true;
        clearTimeout(timer);
        this.d.events.off("event", onEvent);
      };
      // Listen first, then look at what is stored: an event landing meanwhile is seen by one or the other.
      this.d.events.on("event", onEvent);
      void check();
    });
  }

  /** Resolves once the process manager has handled everything up to `position` (side effects done). */
  async settled(position: number, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new LifecycleError("timeout", `lifecycle step at position ${position} not done within ${timeoutMs} ms`),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([
        (async () => {
          await this.d.pm()?.caughtUp(position);
          await this.d.folded(await this.d.store.headPosition());
        })(),
        timeout,
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `p`, or nothing once `ms` passed (the caller goes on either way). */
async function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, ms))))]);
  clearTimeout(timer);
}
