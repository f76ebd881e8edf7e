/**
 * The parts of the lifecycle's boot (LifecycleService.start puts them in order): package dirs a crash left half
 * done are recovered, the process manager is let finish what a crash interrupted until it is idle, then every
 * ACTIVATED plugin is loaded again (container plugins through ContainerPlugins.reconcile).
 */
import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { isValidPluginName } from "@hecate/sdk";
import type { EventStore, ProcessManager } from "@hecate/store";
import type { Logger } from "pino";
import { Flags, hasFlag, type PluginState } from "./aggregate.js";
import { type Loader, LoadFailure, type LoadResult, type PackageOps } from "./loader.js";

/** Cleans every plugin dir of staging leftovers and lost renames (`recoverPackageDir`); a failure is logged. */
export async function recoverPackageDirs(home: string, pkg: PackageOps, logger: Logger): Promise<void> {
  const pluginsDir = join(home, "plugins");
  mkdirSync(pluginsDir, { recursive: true });
  for (const name of readdirSync(pluginsDir)) {
    if (!isValidPluginName(name)) continue;
    await pkg
      .recoverPackageDir(join(pluginsDir, name))
      .catch((err) => logger.error({ plugin: name, err }, "package dir recovery failed"));
  }
}

/**
 * Resolves once the process manager is idle at a head that no longer moves (its own dispatches move the head), so
 * the boot loads never race a load it is doing. `views` is the read side, caught up to the same head.
 */
export async function untilIdle(
  store: EventStore,
  pm: ProcessManager,
  views: { caughtUp(position: number): Promise<void> },
): Promise<void> {
  for (;;) {
    const head = await store.headPosition();
    await pm.caughtUp(head);
    await views.caughtUp(head);
    if ((await store.headPosition()) === head) break;
  }
}

/**
 * Loads again every ACTIVATED plugin that is not loaded yet; `bootLoad` records each outcome (a failure is the
 * plugin's, boot goes on).
 */
export async function loadActivated(
  states: Iterable<PluginState>,
  loader: Pick<Loader, "isLoaded" | "reconcileContainers">,
  bootLoad: (name: string, done?: LoadResult | LoadFailure) => Promise<void>,
): Promise<void> {
  const toLoad = [...states].filter(
    (s) =>
      s.name &&
      hasFlag(s, Flags.ACTIVATED) &&
      !hasFlag(s, Flags.REMOVED) &&
      !hasFlag(s, Flags.EXTRACTING) &&
      !loader.isLoaded(s.name),
  );
  const containerNames = toLoad.filter((s) => s.plugin_type === "container").map((s) => s.name!);
  const containerOutcomes = containerNames.length
    ? await loader
        .reconcileContainers(containerNames)
        .catch((err) => new Map(containerNames.map((n) => [n, new LoadFailure("container", (err as Error).message)])))
    : new Map<string, LoadResult | LoadFailure>();
  // All at once: each is its own stream and worker, and the loader bounds how many load together (loader.ts).
  await Promise.all(toLoad.map((s) => bootLoad(s.name!, containerOutcomes.get(s.name!))));
}
