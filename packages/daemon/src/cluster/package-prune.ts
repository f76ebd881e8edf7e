/**
 * Pruning of the cluster's package table (`hecate_cluster_packages`): the archive bytes of a package go once no plugin
 * needs them and no node can still be on its way to them. A package is deleted when ALL hold (see
 * ../lifecycle/README.md, "Cluster mode"):
 *   1. no plugin's current package is it: the latest plugin_installed_v1 / plugin_upgraded_v1 of every plugin that is
 *      not removed names another digest (or none);
 *   2. every node seen within `nodeGoneMs` (default 24 h) has its process-manager checkpoint at or past the event
 *      that superseded it (the next install / upgrade / remove of that plugin): every node has moved on. A node away
 *      longer does not hold pruning up: when it comes back, its catch-up skips the steps of superseded events (it
 *      fetches only the current packages);
 *   3. its row was not stored (again) within `graceMs` (default 10 min), checked in the DELETE itself
 *      (storePackage refreshes `stored_at`).
 * A pass holds the package lock exclusively (a PostgreSQL advisory lock); an install or upgrade holds it shared from
 * storing its bytes until its event is appended, so a pass never deletes bytes whose event is about to land (the
 * grace is a second guard, e.g. for bytes stored by a version without the lock).
 * Every node runs it every `everyMs` (default 5 min); runs of several nodes at once are harmless (one DELETE wins).
 */
import type { EventStore } from "@hecate/store";
import type { Logger } from "pino";
import type { ClusterNode } from "./cluster-node.js";

export interface PruneTimings {
  graceMs?: number;
  everyMs?: number;
  nodeGoneMs?: number;
}

export interface PruneResult {
  deleted: string[];
  /** Not deleted, and why (in use, or the nodes that have not moved past it yet). */
  kept: { sha256: string; why: string }[];
  /** The pass did not run: another pass or an install held the package lock (deleted and kept are empty). */
  skipped: boolean;
}

const STREAM_PREFIX = "plugin-";

export class PackagePruner {
  private readonly graceMs: number;
  private readonly everyMs: number;
  private readonly nodeGoneMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly o: { store: EventStore; cluster: ClusterNode; plugins: () => string[]; logger: Logger },
    timings: PruneTimings = {},
  ) {
    this.graceMs = timings.graceMs ?? 10 * 60_000;
    this.everyMs = timings.everyMs ?? 5 * 60_000;
    this.nodeGoneMs = timings.nodeGoneMs ?? 24 * 3600_000;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.running ??= this.prune()
        .catch((err) => this.o.logger.warn({ err }, "package table pruning failed; next run retries"))
        .finally(() => {
          this.running = undefined;
        });
    }, this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass (also called by tests directly); skipped while another pass or an install holds the package lock. */
  async prune(): Promise<PruneResult> {
    return (
      (await this.o.cluster.withExclusivePackageLock(() => this.pass())) ?? { deleted: [], kept: [], skipped: true }
    );
  }

  private async pass(): Promise<PruneResult> {
    const [rows, nodes] = await Promise.all([this.o.cluster.packages(), this.o.cluster.nodes()]);
    if (rows.length === 0) return { deleted: [], kept: [], skipped: false };
    const { current, supersededAt } = await this.references();
    const seenSince = Date.now() - this.nodeGoneMs;
    const live = nodes.filter((n) => Date.parse(n.seenAt) >= seenSince);
    const checkpoints = new Map(
      await Promise.all(
        live.map(
          async (n) =>
            [n.node, (await this.o.store.readCheckpoint(`pm:plugin-lifecycle@${n.node}`)) ?? 0] as [string, number],
        ),
      ),
    );
    const kept: PruneResult["kept"] = [];
    const candidates: string[] = [];
    for (const { sha256 } of rows) {
      if (current.has(sha256)) {
        kept.push({ sha256, why: `current package of ${current.get(sha256)}` });
        continue;
      }
      const need = supersededAt.get(sha256) ?? 0;
      const behind = [...checkpoints].filter(([, at]) => at < need).map(([node]) => node);
      if (behind.length > 0) kept.push({ sha256, why: `nodes ${behind.join(", ")} not past position ${need}` });
      else candidates.push(sha256);
    }
    const deleted = await this.o.cluster.deletePackages(candidates, this.graceMs);
    for (const sha256 of candidates)
      if (!deleted.includes(sha256)) kept.push({ sha256, why: `stored within the last ${this.graceMs} ms` });
    if (deleted.length > 0) this.o.logger.info({ deleted }, "unused packages removed from the cluster's package table");
    return { deleted, kept, skipped: false };
  }

  /** Digests each plugin's current package names, and where every other digest was superseded (latest). */
  private async references(): Promise<{ current: Map<string, string>; supersededAt: Map<string, number> }> {
    const current = new Map<string, string>();
    const supersededAt = new Map<string, number>();
    for (const name of this.o.plugins()) {
      let now: string | null = null;
      for (const e of await this.o.store.readStream(STREAM_PREFIX + name)) {
        const isPackage = e.type === "plugin_installed_v1" || e.type === "plugin_upgraded_v1";
        if (!isPackage && e.type !== "plugin_removed_v1") continue;
        if (now !== null) supersededAt.set(now, Math.max(supersededAt.get(now) ?? 0, e.position));
        const sha = e.metadata.packageSha256;
        now = isPackage && typeof sha === "string" ? sha : null;
      }
      if (now !== null) current.set(now, name);
    }
    return { current, supersededAt };
  }
}
