/**
 * One container's run: a new generation created (socket dir, data image, held image, hardened spec), started and
 * health-checked behind a verified socket; a running one drained, stopped and removed with its mounts.
 */
import { chownSync, lchownSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { type Emit, type Entry, hostLayout, type MakeEntry, SOCKET_NAME } from "./container-entry.js";
import { lastLogLines } from "./container-logs.js";
import { type ContainerSpecs, IN_CONTAINER } from "./container-spec.js";
import { ContainerPluginError, type ContainerPluginSpec, type ContainerPluginsOptions } from "./container-types.js";
import { mountDataImage, mountSocketDir, releaseSocketDir, unmountAll } from "./host-mounts.js";
import type { PluginImages } from "./plugin-images.js";
import { type PodmanClient, sleep } from "./podman.js";
import { SocketLink } from "./socket-link.js";
import { UntrustedSocketError, VerifiedSocket } from "./verified-socket.js";

/** The proxy's wait for a reply head beyond the operator's cap: the SDK's own 504 arrives first. */
const PROXY_DEADLINE_MARGIN_MS = 2000;

export interface RunnerParts {
  podman: PodmanClient;
  instanceId: string;
  specs: Pick<ContainerSpecs, "check" | "sandboxPolicy" | "create">;
  images: Pick<PluginImages, "resolve" | "hold">;
  makeEntry: MakeEntry;
  /** Starts the Podman service and the crash watch if needed (ContainerPlugins.start). */
  start(): Promise<void>;
  /** Mounts the entry's routes again when it is the plugin's loaded one (its link changed: a restart). */
  reroute(e: Entry): void;
  emit: Emit;
}

export type RunnerOptions = Pick<ContainerPluginsOptions, "healthTimeoutMs" | "drainMs" | "stopTimeoutS" | "replies">;

export class ContainerRunner {
  constructor(
    private readonly parts: RunnerParts,
    private readonly opts: RunnerOptions,
  ) {}

  /** A new container of `spec` (generation `generation`), started and healthy; throws ContainerPluginError. */
  async start(spec: ContainerPluginSpec, generation: number): Promise<Entry> {
    const { podman, specs, images } = this.parts;
    if (spec.manifest.plugin_type !== undefined && spec.manifest.plugin_type !== "container")
      throw new ContainerPluginError(spec.name, "invalid_manifest", `plugin_type is ${spec.manifest.plugin_type}`);
    await this.parts.start();
    let resolved: { image: string; nodeBase: boolean };
    try {
      specs.check(spec);
      resolved = await images.resolve(spec);
    } catch (err) {
      if (err instanceof ContainerPluginError) throw err;
      throw new ContainerPluginError(spec.name, "image_failed", (err as Error).message);
    }
    const short = this.parts.instanceId.slice(0, 8);
    const entry = this.parts.makeEntry(spec, generation, "", `hecate-${short}-${spec.name}-${generation}`);
    try {
      // Socket dir: a fresh 1 MiB tmpfs owned by the plugin's uid only (0700), so only it and root see the socket.
      await mountSocketDir(entry.socketDir, entry.uid);
      // The plugin's package is 0600/0700 like everything under $HECATE_HOME: its uid owns it to read it (mounted
      // read-only, so it cannot change it).
      ensureOwnedDir(hostLayout(spec).package, entry.uid);
      if (spec.manifest.container?.writable_data === true) {
        const data = hostLayout(spec).data;
        await mountDataImage(`${data}.img`, data, specs.sandboxPolicy(spec).dataQuotaMb, entry.uid);
        ensureOwnedDir(data, entry.uid);
      }
      if (!resolved.nodeBase) entry.image = await images.hold(spec, resolved.image);
      // A leftover container of the same name (crash between create and our bookkeeping) is ours to replace.
      await podman.removeContainer(entry.containerName);
      entry.containerId = await podman.createContainer(specs.create(entry, resolved.image, resolved.nodeBase));
    } catch (err) {
      await releaseSocketDir(entry.socketDir).catch(() => {});
      if (err instanceof ContainerPluginError) throw err;
      throw new ContainerPluginError(spec.name, "create_failed", (err as Error).message);
    }
    try {
      await podman.startContainer(entry.containerId);
      await this.waitHealthy(entry);
    } catch (err) {
      const logs = await lastLogLines(podman, entry.containerId);
      entry.expectingExit = true;
      await entry.link?.close(0);
      await podman.removeContainer(entry.containerId).catch(() => {});
      await releaseSocketDir(entry.socketDir).catch(() => {});
      if (err instanceof ContainerPluginError)
        throw new ContainerPluginError(
          spec.name,
          err.code,
          `${err.message.replace(/^container plugin \S+: /, "")}${logs ? `; last log lines:\n${logs}` : ""}`,
          logs,
        );
      throw new ContainerPluginError(spec.name, "start_failed", `${(err as Error).message}\n${logs}`, logs);
    }
    return entry;
  }

  /**
   * Drain, stop with a deadline, remove; the socket link and the socket dir's tmpfs go last, the data image is
   * unmounted unless `keepData` (a swap: the next generation uses it). Never throws (best effort).
   */
  async retire(e: Entry, opts: { keepData?: boolean } = {}): Promise<void> {
    const { podman } = this.parts;
    e.expectingExit = true;
    e.logs?.abort();
    await e.link?.proxy.drain(this.opts.drainMs ?? 5000);
    try {
      await podman.stopContainer(e.containerId, this.opts.stopTimeoutS ?? 5);
    } catch {}
    await podman.removeContainer(e.containerId).catch(() => {});
    await e.link?.close(0);
    try {
      await releaseSocketDir(e.socketDir);
      if (!opts.keepData) await unmountAll(hostLayout(e.spec).data);
    } catch (err) {
      this.parts.emit({
        type: "log",
        plugin: e.spec.name,
        level: "error",
        msg: `unmount failed: ${(err as Error).message}`,
      });
    }
  }

  /**
   * Opens and verifies the plugin's socket (VerifiedSocket): undefined while nothing is bound there yet (or, with
   * `quiet`, when it is untrusted); an untrusted entry is a plugin log line and a `socket_untrusted` error.
   */
  verifiedLink(e: Entry, quiet = false): SocketLink | undefined {
    const { emit } = this.parts;
    try {
      const cap = this.opts.replies?.maxHandlerTimeoutMs ?? 0;
      return new SocketLink(e.spec.name, VerifiedSocket.open(e.socketPath, e.uid), {
        headersTimeoutMs: cap > 0 ? cap + PROXY_DEADLINE_MARGIN_MS : 0,
        onProtocolError: (msg) => emit({ type: "log", plugin: e.spec.name, level: "warn", msg }),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return undefined;
      const reason = err instanceof UntrustedSocketError ? err.reason : `cannot open it (${code ?? String(err)})`;
      const msg = `socket ${IN_CONTAINER.run}/${SOCKET_NAME} refused: ${reason}`;
      emit({ type: "log", plugin: e.spec.name, level: "error", msg });
      if (quiet) return undefined;
      throw new ContainerPluginError(e.spec.name, "socket_untrusted", msg);
    }
  }

  /**
   * Waits until the plugin's (verified) socket answers the health check (deadline `healthTimeoutMs`), then makes
   * that socket the entry's link: the routes are switched to it when the entry is mounted (a restart), and the
   * previous link is closed. A socket that does not answer is closed and opened (and verified) again: a restarted
   * container binds a new one.
   */
  async waitHealthy(e: Entry): Promise<void> {
    const timeoutMs = this.opts.healthTimeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;
    let lastInspect = 0;
    while (Date.now() < deadline) {
      const candidate = this.verifiedLink(e);
      if (candidate && (await candidate.probe(e.healthPath, 1000))) {
        const old = e.link;
        e.link = candidate;
        if (old) {
          this.parts.reroute(e);
          await old.close(0);
        }
        return;
      }
      await candidate?.close(0);
      if (Date.now() - lastInspect > 500) {
        lastInspect = Date.now();
        const info = await this.parts.podman.inspectContainer(e.containerId);
        if (!info?.State.Running)
          throw new ContainerPluginError(
            e.spec.name,
            "start_failed",
            `container exited (code ${info?.State.ExitCode ?? "?"}${info?.State.OOMKilled ? ", OOM" : ""}) before it was healthy`,
          );
      }
      await sleep(40);
    }
    throw new ContainerPluginError(
      e.spec.name,
      "unhealthy",
      `no healthy answer on ${e.healthPath} within ${timeoutMs} ms`,
    );
  }
}

/**
 * The data dir must belong to the plugin's uid. The uid is stable per name but can move when another plugin took
 * it first, so a mismatch re-owns the whole tree (plugin-owned files only; symlinks are not followed).
 */
function ensureOwnedDir(dir: string, uid: number): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (statSync(dir).uid === uid) return;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      lchownSync(p, uid, uid);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  chownSync(dir, uid, uid);
}
