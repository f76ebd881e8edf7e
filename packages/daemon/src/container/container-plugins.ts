/**
 * Container plugins: one hardened Podman container per plugin, reached by HTTP over a Unix socket in a per-plugin
 * socket dir, proxied at `/plugin/{name}/api/*` through the router (same atomic snapshot swap as in-process plugins).
 *
 * - load: image (own Node base image, or `podman load` of the package's archive) -> create + start hardened ->
 *   wait for the health endpoint with a deadline -> mount the proxy (+ static dir).
 * - swap: a new container (next generation, own socket dir) is started and health-checked beside the old one; the
 *   route mount is swapped in one step; the old one is drained, stopped and removed.
 * - unload: routes removed, in-flight requests drained, container stopped with a deadline and removed.
 * - watch: Podman's event stream (exit) and a periodic health probe; a crash is restarted within a budget
 *   (default 3 in 5 min), then the plugin is reported failed and taken down. OOM kills are reported as reason "oom".
 * - reconcile (boot): containers labelled with this instance are adopted when they belong to a wanted plugin, run
 *   the same spec and answer their health check; every other container of this instance is removed. The instance id
 *   is persistent per HECATE_HOME, so containers of other daemons on the machine are never touched, and nothing is
 *   ever killed by a stale pid: only by container id from Podman's own list.
 */
import { createHash, randomUUID } from "node:crypto";
import {
  chownSync,
  existsSync,
  lchownSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { PluginConfig, PluginHealth } from "@hecate/sdk";
import { pluginPaths } from "@hecate/sdk/paths";
import type { PluginMount, Router } from "../http/router.js";
import { KeyedSerial } from "../util/keyed-serial.js";
import { CONTAINER_NODE_MODULES, ensureNodeBaseImage, sdkModuleMounts } from "./base-image.js";
import {
  type ContainerEvent,
  ContainerPluginError,
  type ContainerPluginSpec,
  type ContainerPluginsOptions,
  DEFAULT_DATA_QUOTA_MB,
  DEFAULT_LIMITS,
  DEFAULT_MAX_DATA_QUOTA_MB,
  LABEL_GENERATION,
  LABEL_INSTANCE,
  LABEL_PLUGIN,
  LABEL_SPEC,
  type LoadedContainer,
} from "./container-types.js";
import { mountDataImage, mountSocketDir, mountsUnder, releaseSocketDir, unmountAll } from "./host-mounts.js";
import { addHeld, apiImageStore, type HeldImage, readHeld, releaseImages, writeHeld } from "./image-refs.js";
import {
  type ContainerCreateSpec,
  type ContainerSummary,
  type PodmanClient,
  PodmanError,
  type PodmanEvent,
  sleep,
} from "./podman.js";
import { SocketLink } from "./socket-link.js";
import { UntrustedSocketError, VerifiedSocket } from "./verified-socket.js";

export * from "./container-types.js";

/** Part of the spec hash: containers created with an older sandbox layout are replaced, never adopted. */
const SANDBOX_LAYOUT = 2;
const SOCKET_NAME = "plugin.sock";
/** Where things are inside a container. */
const IN_CONTAINER = { package: "/plugin", data: "/data", run: "/run/plugin", tmp: "/tmp" } as const;
const INIT_AVAILABLE = existsSync("/usr/libexec/podman/catatonit");
const DEFAULT_HEALTH_PATH = "/__health";
const NOEXEC = "noexec,nosuid,nodev";

/** The proxy's wait for a reply head beyond the operator's cap: the SDK's own 504 arrives first. */
const PROXY_DEADLINE_MARGIN_MS = 2000;

interface Entry {
  spec: ContainerPluginSpec;
  specHash: string;
  generation: number;
  containerId: string;
  containerName: string;
  socketDir: string;
  /** The plugin's socket in its socket dir: never connected to by path, only opened (and verified) once. */
  socketPath: string;
  uid: number;
  /** Proxy and health probe on the verified socket; set once the container answered its health check. */
  link?: SocketLink;
  healthPath: string;
  /** True while we stop/restart it ourselves: its exit is not a crash. */
  expectingExit: boolean;
  restarting: boolean;
  restarts: number[];
  healthFails: number;
  failed: boolean;
  /** Stops following the container's output. */
  logs?: AbortController;
  /** The image it was created from (not set for the Node base image, which is never released: image-refs.ts). */
  image?: HeldImage;
}

export class ContainerPlugins {
  readonly instanceId: string;
  readonly home: string;
  readonly podman: PodmanClient;
  private readonly router?: Router;
  private readonly opts: ContainerPluginsOptions;
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new KeyedSerial();
  private readonly events = new AbortController();
  private healthTimer: NodeJS.Timeout | undefined;
  private watching = false;
  private probing = false;
  private baseImage: Promise<string> | undefined;
  /** Read-only binds of `@hecate/sdk` and its dependency closure into Node-base containers. */
  private readonly sdkBinds: string[];

  constructor(opts: ContainerPluginsOptions) {
    this.opts = opts;
    this.home = opts.home;
    this.podman = opts.podman;
    this.router = opts.router;
    this.instanceId = opts.instanceId ?? persistentInstanceId(opts.home);
    const daemonDir = fileURLToPath(new URL("../../..", import.meta.url)); // dist/src/container -> package root
    this.sdkBinds = sdkModuleMounts(daemonDir).map(([name, dir]) => `${dir}:${CONTAINER_NODE_MODULES}/${name}:ro`);
  }

  /** Starts the Podman service if needed and the event watch. Idempotent. */
  async start(): Promise<void> {
    await this.podman.ensureService();
    if (!this.watching) {
      this.watching = true;
      void this.watchEvents();
      const every = this.opts.healthIntervalMs ?? 5000;
      this.healthTimer = setInterval(() => void this.probeAll(), every);
      this.healthTimer.unref();
    }
  }

  /** The Node base image (built once from the host's node when missing). */
  ensureBaseImage(): Promise<string> {
    this.baseImage ??= ensureNodeBaseImage(this.podman).catch((err) => {
      this.baseImage = undefined;
      throw err;
    });
    return this.baseImage;
  }

  list(): LoadedContainer[] {
    return [...this.entries.values()].map((e) => this.describe(e));
  }

  get(name: string): LoadedContainer | undefined {
    const e = this.entries.get(name);
    return e && this.describe(e);
  }

  /** A loaded container's health: its HTTP health check (`health_path`) answering 200 within `timeoutMs`. */
  async health(name: string, timeoutMs: number): Promise<PluginHealth | undefined> {
    const e = this.entries.get(name);
    if (!e) return undefined;
    if (e.failed) return { status: "down", detail: "failed: not restarted" };
    if (e.restarting || !e.link) return { status: "degraded", detail: "restarting" };
    if (await e.link.probe(e.healthPath, timeoutMs)) return { status: "ok" };
    return { status: "down", detail: `no 200 from ${e.healthPath} within ${timeoutMs} ms` };
  }

  /**
   * Loads a container plugin; throws ContainerPluginError (with the container's last log lines when useful).
   * Containers of this plugin left by an earlier run of this daemon instance (kill -9, crash mid-operation) are
   * adopted when one runs the same spec and answers its health check; all others of the plugin are removed first.
   */
  load(spec: ContainerPluginSpec): Promise<LoadedContainer> {
    return this.serial(spec.name, async () => {
      if (this.entries.has(spec.name)) throw new ContainerPluginError(spec.name, "already_loaded", "already loaded");
      await this.start();
      const { adopted, nextGeneration } = await this.adoptOrClear(spec);
      const startedAt = Date.now();
      let entry: Entry;
      try {
        entry = adopted ?? (await this.startContainer(spec, nextGeneration));
      } catch (err) {
        // Nothing of this plugin runs: its data image need not stay mounted (the load's own error is what counts).
        await unmountAll(hostLayout(spec).data).catch(() => {});
        throw err;
      }
      this.mount(entry);
      this.entries.set(spec.name, entry);
      this.followLogs(entry, adopted ? Date.now() : startedAt);
      if (!adopted) await this.settleImages(entry);
      return { ...this.describe(entry), adopted: adopted !== undefined };
    });
  }

  /**
   * Removes every container of this instance that belongs to no loaded plugin (and socket dirs nobody uses).
   * The daemon runs it once boot recovery has loaded what should run. Returns the names of removed containers.
   */
  async sweep(): Promise<string[]> {
    await this.start();
    const removed: string[] = [];
    const found = await this.podman.listContainers(`${LABEL_INSTANCE}=${this.instanceId}`);
    const byPlugin = new Map<string, ContainerSummary[]>();
    for (const c of found) {
      const name = c.Labels[LABEL_PLUGIN] ?? "";
      byPlugin.set(name, [...(byPlugin.get(name) ?? []), c]);
    }
    const socketRoot = join(this.home, "run", "containers");
    for (const dir of existsSync(socketRoot) ? readdirSync(socketRoot) : []) {
      const name = dir.slice(0, dir.lastIndexOf("."));
      if (!byPlugin.has(name)) byPlugin.set(name, []);
    }
    for (const [name, containers] of byPlugin) {
      // Per plugin and in its queue: a load running now keeps its container and socket dir.
      await this.serial(name, async () => {
        const keep = this.entries.get(name);
        for (const c of containers) {
          if (c.Id === keep?.containerId) continue;
          await this.podman.removeContainer(c.Id);
          removed.push(containerName(c));
        }
        await this.removeStaleSocketDirs(name, keep);
      });
    }
    // Data images of plugins that are not loaded (left mounted by a killed daemon).
    for (const dir of mountsUnder(join(this.home, "plugins"))) {
      const m = /^([^/]+)\/data$/.exec(dir.slice(join(this.home, "plugins").length + 1));
      if (m) await this.serial(m[1], async () => this.entries.has(m[1]) || (await unmountAll(dir)));
    }
    return removed;
  }

  /** Zero-downtime replacement: the new container is healthy before the routes switch to it. */
  swap(name: string, spec: ContainerPluginSpec): Promise<LoadedContainer> {
    return this.serial(name, async () => {
      const old = this.entries.get(name);
      if (!old) throw new ContainerPluginError(name, "not_loaded", "not loaded");
      const startedAt = Date.now();
      const entry = await this.startContainer(spec, old.generation + 1);
      this.entries.set(name, entry);
      this.mount(entry);
      this.followLogs(entry, startedAt);
      await this.retire(old, { keepData: true }); // the new generation uses the same data image
      await this.settleImages(entry); // the old generation's image goes unless someone else uses it
      return this.describe(entry);
    });
  }

  /** Routes removed, in-flight requests drained, container stopped (deadline) and removed. */
  unload(name: string): Promise<boolean> {
    return this.serial(name, async () => {
      const e = this.entries.get(name);
      if (!e) return false;
      this.entries.delete(name);
      this.router?.removePlugin(name);
      await this.retire(e);
      return true;
    });
  }

  /**
   * Boot reconciliation in one call: load every wanted plugin (adopting its healthy container of the same spec),
   * then sweep every other container of this instance. Returns what happened.
   */
  async reconcile(
    wanted: ContainerPluginSpec[],
  ): Promise<{ adopted: string[]; removed: string[]; loaded: string[]; failed: { name: string; error: Error }[] }> {
    const adopted: string[] = [];
    const loaded: string[] = [];
    const failed: { name: string; error: Error }[] = [];
    const removed: string[] = [];
    for (const spec of wanted) {
      if (this.entries.has(spec.name)) continue;
      try {
        const r = await this.load(spec);
        (r.adopted ? adopted : loaded).push(spec.name);
      } catch (err) {
        failed.push({ name: spec.name, error: err as Error }); // one plugin failing never stops the others
      }
    }
    removed.push(...(await this.sweep()));
    return { adopted, removed, loaded, failed };
  }

  /** Unloads every plugin and stops watching. `leaveRunning` only detaches (tests of daemon crashes). */
  async close(opts: { leaveRunning?: boolean } = {}): Promise<void> {
    this.events.abort();
    clearInterval(this.healthTimer);
    if (opts.leaveRunning) {
      for (const e of this.entries.values()) {
        e.logs?.abort();
        await e.link?.close(0); // the mounts stay: the next daemon adopts the container
      }
      this.entries.clear();
      return;
    }
    await Promise.all([...this.entries.keys()].map((n) => this.unload(n)));
  }

  // ---- internals ----

  /**
   * Existing containers of this plugin and instance: the newest running one with the same spec that answers its
   * health check is adopted; every other one is removed (by container id from Podman's own list, never by pid).
   */
  private async adoptOrClear(spec: ContainerPluginSpec): Promise<{ adopted?: Entry; nextGeneration: number }> {
    const found = (await this.podman.listContainers(`${LABEL_INSTANCE}=${this.instanceId}`))
      .filter((c) => c.Labels[LABEL_PLUGIN] === spec.name)
      .sort((a, b) => generationOf(b) - generationOf(a));
    const nextGeneration = Math.max(0, ...found.map(generationOf)) + 1;
    let adopted: Entry | undefined;
    const hash = this.specHash(spec);
    for (const c of found) {
      if (!adopted && c.State === "running" && c.Labels[LABEL_SPEC] === hash) {
        const entry = this.entryFor(spec, generationOf(c), c.Id, containerName(c));
        const info = await this.podman.inspectContainer(c.Id);
        const uid = Number(info?.Config.User.split(":")[0]);
        if (Number.isInteger(uid) && uid > 0) entry.uid = uid; // the uid it really runs as
        // Verified exactly like a new container's socket: an untrusted one is never adopted.
        const link = this.verifiedLink(entry, true);
        if (link && (await link.probe(entry.healthPath, 2000))) {
          entry.link = link;
          adopted = entry;
          continue;
        }
        await link?.close(0);
      }
      await this.podman.removeContainer(c.Id);
      await releaseSocketDir(this.socketDirFor(spec.name, generationOf(c)));
    }
    return { adopted, nextGeneration };
  }

  /** Socket dirs `run/containers/{name}.{generation}` of this plugin except the loaded one's. */
  private async removeStaleSocketDirs(name: string, keep: Entry | undefined): Promise<void> {
    const root = join(this.home, "run", "containers");
    if (!existsSync(root)) return;
    for (const dir of readdirSync(root)) {
      if (dir.slice(0, dir.lastIndexOf(".")) !== name) continue;
      const path = join(root, dir);
      if (path !== keep?.socketDir) await releaseSocketDir(path);
    }
  }

  /** Streams the container's output from `sinceMs` into `log` events until it stops (a restart follows anew). */
  private followLogs(e: Entry, sinceMs: number): void {
    if (!this.opts.onEvent) return;
    e.logs?.abort();
    const ac = new AbortController();
    e.logs = ac;
    const plugin = e.spec.name;
    void this.podman
      .followLogs(e.containerId, sinceMs / 1000, (stream, line) => this.emit(logEvent(plugin, stream, line)), ac.signal)
      .catch(() => {}); // ends with the container or at abort; nothing to report
  }

  private describe(e: Entry): LoadedContainer {
    return {
      name: e.spec.name,
      containerId: e.containerId,
      containerName: e.containerName,
      socketPath: e.socketPath,
      uid: e.uid,
      generation: e.generation,
      image: imageOf(e.spec),
    };
  }

  /**
   * What the manifest asks of the sandbox, checked against the operator's policy: an executable /tmp only when the
   * operator allows it, a data quota within the operator's cap.
   */
  private sandboxPolicy(spec: ContainerPluginSpec): { execTmp: boolean; dataQuotaMb: number } {
    const c = spec.manifest.container ?? {};
    if (c.exec_tmp !== undefined && typeof c.exec_tmp !== "boolean")
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.exec_tmp must be a boolean");
    if (c.exec_tmp === true && this.opts.allowExecTmp !== true)
      throw new ContainerPluginError(
        spec.name,
        "not_allowed",
        "container.exec_tmp asks for an executable /tmp, which the operator's policy does not allow",
      );
    const dataQuotaMb = positive(c.data_quota_mb, DEFAULT_DATA_QUOTA_MB, spec.name, "data_quota_mb");
    const cap = this.opts.maxDataQuotaMb ?? DEFAULT_MAX_DATA_QUOTA_MB;
    if (!Number.isInteger(dataQuotaMb) || dataQuotaMb < 8)
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.data_quota_mb must be an integer >= 8");
    if (dataQuotaMb > cap)
      throw new ContainerPluginError(
        spec.name,
        "not_allowed",
        `container.data_quota_mb ${dataQuotaMb} is above the operator's cap of ${cap} MiB`,
      );
    return { execTmp: c.exec_tmp === true, dataQuotaMb };
  }

  /** specHash plus the policy that shapes the container (an executable /tmp allowed or not, its reply limits). */
  private specHash(spec: ContainerPluginSpec): string {
    return specHash(spec, `exec_tmp=${this.opts.allowExecTmp === true};${this.replyEnv().join(";")}`);
  }

  /** The reply limits as the container's SDK reads them (HECATE_HANDLER_TIMEOUT_MS, ...); unset ones keep its defaults. */
  private replyEnv(): string[] {
    const r = this.opts.replies ?? {};
    const env: string[] = [];
    if (r.handlerTimeoutMs !== undefined) env.push(`HECATE_HANDLER_TIMEOUT_MS=${r.handlerTimeoutMs}`);
    if (r.maxHandlerTimeoutMs !== undefined) env.push(`HECATE_MAX_HANDLER_TIMEOUT_MS=${r.maxHandlerTimeoutMs}`);
    if (r.maxReplyBytes !== undefined) env.push(`HECATE_MAX_REPLY_BYTES=${r.maxReplyBytes}`);
    return env;
  }

  /** One operation per plugin at a time (load/swap/unload/restart). */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(name, fn);
  }

  private uidFor(name: string): number {
    // Stable per plugin name (fnv-1a), probing past uids already used by other loaded plugins.
    let h = 0x811c9dc5;
    for (const ch of Buffer.from(name)) h = Math.imul(h ^ ch, 0x01000193) >>> 0;
    const base = this.opts.uidBase ?? 200_000;
    const used = new Set([...this.entries.values()].filter((e) => e.spec.name !== name).map((e) => e.uid));
    let uid = base + (h % 50_000);
    while (used.has(uid)) uid = base + ((uid - base + 1) % 50_000);
    return uid;
  }

  /** `run/containers/{name}.{generation}`: one socket dir per container, so a swap never reuses a live one. */
  private socketDirFor(name: string, generation: number): string {
    return join(this.home, "run", "containers", `${name}.${generation}`);
  }

  private entryFor(spec: ContainerPluginSpec, generation: number, containerId: string, containerName: string): Entry {
    const socketDir = this.socketDirFor(spec.name, generation);
    const socketPath = join(socketDir, SOCKET_NAME);
    return {
      spec,
      specHash: this.specHash(spec),
      generation,
      containerId,
      containerName,
      socketDir,
      socketPath,
      uid: this.uidFor(spec.name),
      healthPath: spec.manifest.container?.health_path ?? DEFAULT_HEALTH_PATH,
      expectingExit: false,
      restarting: false,
      restarts: [],
      healthFails: 0,
      failed: false,
    };
  }

  private async resolveImage(spec: ContainerPluginSpec): Promise<{ image: string; nodeBase: boolean }> {
    const c = spec.manifest.container ?? {};
    if (c.command !== undefined && (!Array.isArray(c.command) || !c.command.every((x) => typeof x === "string")))
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.command must be an array of strings");
    if (c.writable_data !== undefined && typeof c.writable_data !== "boolean")
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.writable_data must be a boolean");
    this.sandboxPolicy(spec); // exec_tmp / data_quota_mb against the operator's policy
    if (c.image_archive) {
      const pkg = hostLayout(spec).package;
      const archive = resolve(pkg, c.image_archive);
      if (!archive.startsWith(`${pkg}/`) || !existsSync(archive))
        throw new ContainerPluginError(spec.name, "invalid_manifest", `image_archive ${c.image_archive} not found`);
      if (c.image && (await this.podman.imageExists(c.image))) return { image: c.image, nodeBase: false };
      const names = await this.podman.loadImage(archive);
      const image = c.image ?? names[0];
      if (!image) throw new ContainerPluginError(spec.name, "image_failed", "podman load reported no image name");
      return { image, nodeBase: false };
    }
    if (c.image) {
      if (!(await this.podman.imageExists(c.image)))
        throw new ContainerPluginError(spec.name, "image_failed", `image ${c.image} is not present (no registry)`);
      return { image: c.image, nodeBase: false };
    }
    if (!c.command?.length)
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.command is required on the base image");
    return { image: await this.ensureBaseImage(), nodeBase: true };
  }

  private createSpec(entry: Entry, image: string, nodeBase: boolean): ContainerCreateSpec {
    const { spec } = entry;
    const c = spec.manifest.container ?? {};
    const memoryMb = positive(c.memory_mb, DEFAULT_LIMITS.memory_mb, spec.name, "memory_mb");
    const cpus = positive(c.cpus, DEFAULT_LIMITS.cpus, spec.name, "cpus");
    const pids = Math.floor(positive(c.pids, DEFAULT_LIMITS.pids, spec.name, "pids"));
    const host = hostLayout(spec);
    const { execTmp } = this.sandboxPolicy(spec);
    // Writable mounts are never executable (the host mounts of the socket dir and the data image are noexec too);
    // the package is read-only and may hold the plugin's own binaries.
    const binds = [
      `${host.package}:${IN_CONTAINER.package}:ro,nosuid,nodev`,
      `${entry.socketDir}:${IN_CONTAINER.run}:rw,${NOEXEC}`,
    ];
    if (c.writable_data === true) binds.push(`${host.data}:${IN_CONTAINER.data}:rw,${NOEXEC}`);
    if (nodeBase) binds.push(...this.sdkBinds);
    let cmd = c.command;
    if (cmd && nodeBase && cmd[0] === "node") cmd = [process.execPath, ...cmd.slice(1)];
    return {
      name: entry.containerName,
      Image: image,
      ...(cmd ? { Entrypoint: [cmd[0]], Cmd: cmd.slice(1) } : {}),
      User: `${entry.uid}:${entry.uid}`,
      Env: [
        `HECATE_PLUGIN_CONFIG=${JSON.stringify(this.containerConfig(spec))}`,
        "HOME=/tmp",
        "NODE_ENV=production",
        ...this.replyEnv(),
      ],
      WorkingDir: "/plugin",
      StopTimeout: this.opts.stopTimeoutS ?? 5,
      Labels: {
        [LABEL_INSTANCE]: this.instanceId,
        [LABEL_PLUGIN]: spec.name,
        [LABEL_GENERATION]: String(entry.generation),
        [LABEL_SPEC]: entry.specHash,
      },
      HostConfig: {
        // --init (catatonit) makes SIGTERM-ignoring code stop fast and reaps zombies; when the host lacks it
        // (Debian's podman only recommends catatonit), the SDK's own SIGTERM handler and StopTimeout's SIGKILL do.
        Init: INIT_AVAILABLE,
        NetworkMode: "none",
        ReadonlyRootfs: true,
        CapDrop: ["ALL"],
        SecurityOpt: ["no-new-privileges"],
        Memory: memoryMb * 1024 * 1024,
        MemorySwap: memoryMb * 1024 * 1024, // no swap: the limit is the limit
        NanoCpus: Math.round(cpus * 1e9),
        PidsLimit: pids,
        // Podman replaces its whole default list when any ulimit is given: always nofile AND nproc together.
        Ulimits: [
          { Name: "nofile", Soft: 1024, Hard: 1024 },
          { Name: "nproc", Soft: 1024, Hard: 1024 },
        ],
        Binds: binds,
        // Podman's read-only rootfs puts writable, executable tmpfs on /tmp, /var/tmp and /run by default: each is
        // replaced by a bounded noexec one (/dev/shm is noexec by default). Mode: runc gives a tmpfs the mode of its
        // mount point in the image, so /tmp is usable by the plugin's uid only when the image's /tmp is 1777 (the
        // base images are built so).
        Tmpfs: {
          "/tmp": `rw,${execTmp ? "nosuid,nodev" : NOEXEC},size=16m,mode=1777`,
          "/var/tmp": `rw,${NOEXEC},size=16m,mode=1777`,
          "/run": `rw,${NOEXEC},size=1m,mode=755`,
        },
        // Files, not journald (absent without systemd): the last lines go into load-failure errors.
        LogConfig: { Type: "k8s-file", Config: { "max-size": "1mb" } },
        RestartPolicy: { Name: "no" }, // restarts are ours (budget + reporting)
      },
    };
  }

  /** The config the SDK reads from HECATE_PLUGIN_CONFIG: every path as the container sees it. */
  private containerConfig(spec: ContainerPluginSpec): PluginConfig {
    const host = pluginPaths(this.home, spec.name);
    const inPackage = (p: string) => IN_CONTAINER.package + p.slice(host.package.length);
    const paths: PluginConfig["paths"] = {
      root: IN_CONTAINER.package,
      archive: "", // the uploaded archive stays on the host
      package: IN_CONTAINER.package,
      code: inPackage(host.code),
      manifest: inPackage(host.manifest),
      static: inPackage(host.static),
      priv: inPackage(host.priv),
      // Only /data (when asked for) and the socket dir are writable: a container plugin keeps its SQLite files there.
      data: IN_CONTAINER.data,
      sqlite: `${IN_CONTAINER.data}/sqlite`,
      store: `${IN_CONTAINER.data}/store`,
      run: IN_CONTAINER.run,
      tmp: IN_CONTAINER.tmp,
    };
    return {
      pluginName: spec.name,
      pluginVersion: spec.manifest.version,
      storeId: null,
      dataDir: paths.data,
      paths,
      apiPrefix: `/plugin/${spec.name}/api`,
      staticPrefix: `/plugin/${spec.name}`,
      settings: spec.settings ?? {},
      standalone: false,
    };
  }

  private async startContainer(spec: ContainerPluginSpec, generation: number): Promise<Entry> {
    if (spec.manifest.plugin_type !== undefined && spec.manifest.plugin_type !== "container")
      throw new ContainerPluginError(spec.name, "invalid_manifest", `plugin_type is ${spec.manifest.plugin_type}`);
    await this.start();
    let resolved: { image: string; nodeBase: boolean };
    try {
      resolved = await this.resolveImage(spec);
    } catch (err) {
      if (err instanceof ContainerPluginError) throw err;
      throw new ContainerPluginError(spec.name, "image_failed", (err as Error).message);
    }
    const short = this.instanceId.slice(0, 8);
    const entry = this.entryFor(spec, generation, "", `hecate-${short}-${spec.name}-${generation}`);
    try {
      // Socket dir: a fresh 1 MiB tmpfs owned by the plugin's uid only (0700), so only it and root see the socket.
      await mountSocketDir(entry.socketDir, entry.uid);
      // The plugin's package is 0600/0700 like everything under $HECATE_HOME: its uid owns it to read it (mounted
      // read-only, so it cannot change it).
      ensureOwnedDir(hostLayout(spec).package, entry.uid);
      if (spec.manifest.container?.writable_data === true) {
        const data = hostLayout(spec).data;
        await mountDataImage(`${data}.img`, data, this.sandboxPolicy(spec).dataQuotaMb, entry.uid);
        ensureOwnedDir(data, entry.uid);
      }
      if (!resolved.nodeBase) entry.image = await this.holdImage(spec, resolved.image);
      // A leftover container of the same name (crash between create and our bookkeeping) is ours to replace.
      await this.podman.removeContainer(entry.containerName);
      entry.containerId = await this.podman.createContainer(this.createSpec(entry, resolved.image, resolved.nodeBase));
    } catch (err) {
      await releaseSocketDir(entry.socketDir).catch(() => {});
      if (err instanceof ContainerPluginError) throw err;
      throw new ContainerPluginError(spec.name, "create_failed", (err as Error).message);
    }
    try {
      await this.podman.startContainer(entry.containerId);
      await this.waitHealthy(entry, this.opts.healthTimeoutMs ?? 20_000);
    } catch (err) {
      const logs = await this.logs(entry.containerId);
      entry.expectingExit = true;
      await entry.link?.close(0);
      await this.podman.removeContainer(entry.containerId).catch(() => {});
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

  /** Records the image a container is about to be created from as held by its plugin (image-refs.ts). */
  private async holdImage(spec: ContainerPluginSpec, ref: string): Promise<HeldImage | undefined> {
    const found = await apiImageStore(this.podman).inspect(ref);
    if (!found) return undefined; // the create reports the missing image
    const image = { id: found.id, ref };
    addHeld(spec.dir, image);
    return image;
  }

  /**
   * After a successful load or swap: the plugin holds only the running generation's image now; every other image
   * it held is released unless another plugin holds it (an image a container still uses stays recorded, for the next
   * release). Best effort: a failure is a plugin log line, never a failed load.
   */
  private async settleImages(entry: Entry): Promise<void> {
    const { spec } = entry;
    const current = entry.image;
    const others = readHeld(spec.dir).filter((h) => h.id !== current?.id);
    if (others.length === 0) return;
    let inUse: HeldImage[] = [];
    try {
      const r = await releaseImages(apiImageStore(this.podman), dirname(spec.dir), spec.name, others);
      inUse = r.kept.filter((k) => k.why === "in_use").map((k) => k.image);
      if (r.removed.length)
        this.emit({
          type: "log",
          plugin: spec.name,
          level: "info",
          msg: `released image ${r.removed.map((i) => i.ref).join(", ")} (no other plugin uses it)`,
        });
    } catch (err) {
      inUse = others;
      this.emit({
        type: "log",
        plugin: spec.name,
        level: "warn",
        msg: `image release failed: ${(err as Error).message}`,
      });
    }
    writeHeld(spec.dir, [...(current ? [current] : []), ...inUse]);
  }

  private mount(entry: Entry): void {
    const link = entry.link;
    if (!link) throw new ContainerPluginError(entry.spec.name, "route_failed", "no verified socket to route to");
    const pkg = hostLayout(entry.spec).package;
    const staticDir = resolve(pkg, entry.spec.manifest.static ?? "priv/static");
    const http = entry.spec.manifest.container?.http;
    const mount: PluginMount = {
      routes: [
        // The daemon does not know a container's routes: the manifest's `container.http` holds its CSRF exceptions.
        { method: "*", path: "/*", handler: link.proxy.handle, cors: http?.cors, multipart: http?.multipart_paths },
      ],
      upgrade: link.proxy.upgrade,
      staticDir: staticDir.startsWith(`${pkg}/`) && existsSync(staticDir) ? staticDir : undefined,
      manifest: entry.spec.manifest,
    };
    try {
      this.router?.setPlugin(entry.spec.name, mount);
    } catch (err) {
      throw new ContainerPluginError(entry.spec.name, "route_failed", (err as Error).message);
    }
  }

  /**
   * Drain, stop with a deadline, remove; the socket link and the socket dir's tmpfs go last, the data image is
   * unmounted unless `keepData` (a swap: the next generation uses it). Never throws (best effort).
   */
  private async retire(e: Entry, opts: { keepData?: boolean } = {}): Promise<void> {
    e.expectingExit = true;
    e.logs?.abort();
    await e.link?.proxy.drain(this.opts.drainMs ?? 5000);
    try {
      await this.podman.stopContainer(e.containerId, this.opts.stopTimeoutS ?? 5);
    } catch {}
    await this.podman.removeContainer(e.containerId).catch(() => {});
    await e.link?.close(0);
    try {
      await releaseSocketDir(e.socketDir);
      if (!opts.keepData) await unmountAll(hostLayout(e.spec).data);
    } catch (err) {
      this.emit({ type: "log", plugin: e.spec.name, level: "error", msg: `unmount failed: ${(err as Error).message}` });
    }
  }

  /**
   * Opens and verifies the plugin's socket (VerifiedSocket): undefined while nothing is bound there yet (or, with
   * `quiet`, when it is untrusted); an untrusted entry is a plugin log line and a `socket_untrusted` error.
   */
  private verifiedLink(e: Entry, quiet = false): SocketLink | undefined {
    try {
      const cap = this.opts.replies?.maxHandlerTimeoutMs ?? 0;
      return new SocketLink(e.spec.name, VerifiedSocket.open(e.socketPath, e.uid), {
        headersTimeoutMs: cap > 0 ? cap + PROXY_DEADLINE_MARGIN_MS : 0,
        onProtocolError: (msg) => this.emit({ type: "log", plugin: e.spec.name, level: "warn", msg }),
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return undefined;
      const reason = err instanceof UntrustedSocketError ? err.reason : `cannot open it (${code ?? String(err)})`;
      const msg = `socket ${IN_CONTAINER.run}/${SOCKET_NAME} refused: ${reason}`;
      this.emit({ type: "log", plugin: e.spec.name, level: "error", msg });
      if (quiet) return undefined;
      throw new ContainerPluginError(e.spec.name, "socket_untrusted", msg);
    }
  }

  /**
   * Waits until the plugin's (verified) socket answers the health check, then makes that socket the entry's link:
   * the routes are switched to it when the entry is mounted (a restart), and the previous link is closed. A socket
   * that does not answer is closed and opened (and verified) again: a restarted container binds a new one.
   */
  private async waitHealthy(e: Entry, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastInspect = 0;
    while (Date.now() < deadline) {
      const candidate = this.verifiedLink(e);
      if (candidate && (await candidate.probe(e.healthPath, 1000))) {
        const old = e.link;
        e.link = candidate;
        if (old) {
          if (this.entries.get(e.spec.name) === e) this.mount(e);
          await old.close(0);
        }
        return;
      }
      await candidate?.close(0);
      if (Date.now() - lastInspect > 500) {
        lastInspect = Date.now();
        const info = await this.podman.inspectContainer(e.containerId);
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

  private async waitStopped(id: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const info = await this.podman.inspectContainer(id);
      if (!info?.State.Running) return;
      await sleep(50);
    }
  }

  private async logs(id: string): Promise<string> {
    try {
      return (await this.podman.logs(id)).trim();
    } catch {
      return "";
    }
  }

  private async watchEvents(): Promise<void> {
    const signal = this.events.signal;
    while (!signal.aborted) {
      try {
        await this.podman.events(`${LABEL_INSTANCE}=${this.instanceId}`, (ev) => this.onPodmanEvent(ev), signal);
      } catch {
        if (signal.aborted) return;
      }
      await sleep(500); // stream ended or failed: reconnect
    }
  }

  private onPodmanEvent(ev: PodmanEvent): void {
    const action = ev.Action ?? ev.status;
    if (action !== "die" && action !== "died") return;
    const id = ev.Actor?.ID ?? ev.id;
    for (const e of this.entries.values())
      if (e.containerId === id && !e.expectingExit && !e.restarting) void this.onCrash(e, undefined);
  }

  private async probeAll(): Promise<void> {
    if (this.probing) return; // a slow round never overlaps the next
    this.probing = true;
    try {
      await this.probeRound();
    } finally {
      this.probing = false;
    }
  }

  private async probeRound(): Promise<void> {
    const timeout = Math.min(2000, Math.max(200, this.opts.healthIntervalMs ?? 5000));
    for (const e of [...this.entries.values()]) {
      if (e.expectingExit || e.restarting || e.failed) continue;
      if (await e.link?.probe(e.healthPath, timeout)) {
        e.healthFails = 0;
        continue;
      }
      e.healthFails++;
      if (e.healthFails >= (this.opts.healthFailures ?? 3)) void this.onCrash(e, "unhealthy");
    }
  }

  /** A container died or stopped answering: restart within the budget, else take it down and report failure. */
  private async onCrash(e: Entry, why: "unhealthy" | undefined): Promise<void> {
    if (e.restarting || e.expectingExit || e.failed) return;
    e.restarting = true;
    try {
      const info = await this.podman.inspectContainer(e.containerId);
      const oom = !!info && (info.State.OOMKilled || (!info.State.Running && info.State.ExitCode === 137));
      const reason: "oom" | "exit" | "unhealthy" = oom ? "oom" : (why ?? "exit");
      if (!why && info?.State.Running) return; // stale event (already restarted)
      const budget = this.opts.restartBudget ?? { max: 3, windowMs: 5 * 60_000 };
      const now = Date.now();
      e.restarts = e.restarts.filter((t) => now - t < budget.windowMs);
      this.emit({
        type: "crashed",
        plugin: e.spec.name,
        reason,
        exitCode: info && !info.State.Running ? info.State.ExitCode : undefined,
        restarts: e.restarts.length,
      });
      if (this.entries.get(e.spec.name) !== e) return; // unloaded or swapped meanwhile
      if (e.restarts.length >= budget.max) {
        e.failed = true;
        await this.serial(e.spec.name, async () => {
          if (this.entries.get(e.spec.name) !== e) return;
          this.entries.delete(e.spec.name);
          this.router?.removePlugin(e.spec.name);
          await this.retire(e);
        });
        this.emit({
          type: "failed",
          plugin: e.spec.name,
          reason,
          message: `crashed ${budget.max + 1} times within ${Math.round(budget.windowMs / 1000)} s (last: ${reason})`,
        });
        return;
      }
      e.restarts.push(now);
      await this.serial(e.spec.name, async () => {
        if (this.entries.get(e.spec.name) !== e) return;
        e.expectingExit = true;
        if (info?.State.Running) {
          await this.podman.killContainer(e.containerId).catch(() => {});
          await this.waitStopped(e.containerId, 5000);
        }
        e.expectingExit = false;
        const restartedAt = Date.now();
        // A fresh socket dir: nothing the crashed process left there (a stale socket, a symlink) is seen again.
        // The old link keeps its fd (and so the old tmpfs) until the new socket is verified and routed.
        await mountSocketDir(e.socketDir, e.uid);
        await this.podman.startContainer(e.containerId);
        await this.waitHealthy(e, this.opts.healthTimeoutMs ?? 20_000);
        e.healthFails = 0;
        this.followLogs(e, restartedAt);
      });
      this.emit({ type: "restarted", plugin: e.spec.name, restarts: e.restarts.length });
    } catch (err) {
      // The restart itself failed: count it as a crash and try again (the budget bounds this).
      e.restarting = false;
      if (this.entries.get(e.spec.name) === e && !(err instanceof PodmanError && err.status === 404))
        setTimeout(() => void this.onCrash(e, "unhealthy"), 200).unref();
      return;
    } finally {
      e.restarting = false;
    }
  }

  private emit(e: ContainerEvent): void {
    try {
      this.opts.onEvent?.(e);
    } catch {}
  }
}

/** The plugin's package and data dirs under its root (the `pluginPaths` layout, rooted at `spec.dir`). */
function hostLayout(spec: ContainerPluginSpec): { package: string; data: string } {
  const p = pluginPaths("/", spec.name);
  return { package: join(spec.dir, relative(p.root, p.package)), data: join(spec.dir, relative(p.root, p.data)) };
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

function positive(v: number | undefined, dflt: number, plugin: string, field: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
    throw new ContainerPluginError(plugin, "invalid_manifest", `container.${field} must be a positive number`);
  return v;
}

const MAX_LOG_LINE = 16 * 1024;

/** One printed line as a log event: the SDK prints `{"level","msg",...fields}` JSON lines; anything else is text. */
function logEvent(plugin: string, stream: "stdout" | "stderr", raw: string): ContainerEvent {
  const line = raw.length > MAX_LOG_LINE ? `${raw.slice(0, MAX_LOG_LINE)}…` : raw;
  if (line.startsWith("{")) {
    try {
      const { level, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
      if (typeof level === "string" && typeof msg === "string")
        return { type: "log", plugin, level, msg, ...(Object.keys(fields).length ? { fields } : {}) };
    } catch {}
  }
  return { type: "log", plugin, level: stream === "stderr" ? "error" : "info", msg: line };
}

function generationOf(c: ContainerSummary): number {
  const g = Number(c.Labels[LABEL_GENERATION]);
  return Number.isInteger(g) && g > 0 ? g : 0;
}

function containerName(c: ContainerSummary): string {
  return c.Names[0]?.replace(/^\//, "") ?? c.Id;
}

function imageOf(spec: ContainerPluginSpec): string {
  return spec.manifest.container?.image ?? (spec.manifest.container?.image_archive ? "(archive)" : "hecate-node-base");
}

/**
 * What decides whether a running container can be adopted: same plugin dir, manifest, settings, node version and
 * package content (its hecate-files.json lists every file's digest; an upgrade replaces the package dir, and a
 * container started before would still see the old, unlinked files through its bind mount).
 */
export function specHash(spec: ContainerPluginSpec, policy = ""): string {
  let files = "";
  try {
    files = readFileSync(join(hostLayout(spec).package, "hecate-files.json"), "utf8");
  } catch {}
  const what = [spec.dir, spec.manifest, spec.settings ?? {}, process.versions.node, files, SANDBOX_LAYOUT, policy];
  return createHash("sha256").update(JSON.stringify(what)).digest("hex").slice(0, 16);
}

export function persistentInstanceId(home: string): string {
  const file = join(home, "instance-id");
  try {
    const id = readFileSync(file, "utf8").trim();
    if (/^[a-f0-9-]{8,}$/.test(id)) return id;
  } catch {}
  mkdirSync(home, { recursive: true });
  const id = randomUUID();
  writeFileSync(file, `${id}\n`, { mode: 0o600 });
  return id;
}
