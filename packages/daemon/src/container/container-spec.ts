/**
 * What a container gets (README "What a container gets"): the manifest's `container` section checked against the
 * operator's policy, and the hardened create spec built from it (image, mounts, limits, labels, the SDK's config),
 * plus the spec hash that decides whether a running container can be adopted.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { PluginConfig } from "@hecate/sdk";
import { pluginPaths } from "@hecate/sdk/paths";
import { CONTAINER_NODE_MODULES, sdkModuleMounts } from "./base-image.js";
import { type Entry, hostLayout } from "./container-entry.js";
import {
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
} from "./container-types.js";
import type { ContainerCreateSpec } from "./podman.js";

/** Part of the spec hash: containers created with an older sandbox layout are replaced, never adopted. */
const SANDBOX_LAYOUT = 2;
/** Where things are inside a container. */
export const IN_CONTAINER = { package: "/plugin", data: "/data", run: "/run/plugin", tmp: "/tmp" } as const;
const INIT_AVAILABLE = existsSync("/usr/libexec/podman/catatonit");
const NOEXEC = "noexec,nosuid,nodev";

/** The options that shape a container (see ContainerPluginsOptions). */
export type ContainerSpecOptions = Pick<
  ContainerPluginsOptions,
  "home" | "allowExecTmp" | "maxDataQuotaMb" | "replies" | "stopTimeoutS"
>;

export class ContainerSpecs {
  /** Read-only binds of `@hecate/sdk` and its dependency closure into Node-base containers. */
  private readonly sdkBinds: string[];

  constructor(
    private readonly opts: ContainerSpecOptions,
    /** Labels every container (`hecate.instance`). */
    private readonly instanceId: string,
  ) {
    const daemonDir = fileURLToPath(new URL("../../..", import.meta.url)); // dist/src/container -> package root
    this.sdkBinds = sdkModuleMounts(daemonDir).map(([name, dir]) => `${dir}:${CONTAINER_NODE_MODULES}/${name}:ro`);
  }

  /** The manifest's `container` section: well-formed, and within the operator's policy (sandboxPolicy). */
  check(spec: ContainerPluginSpec): void {
    const c = spec.manifest.container ?? {};
    if (c.command !== undefined && (!Array.isArray(c.command) || !c.command.every((x) => typeof x === "string")))
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.command must be an array of strings");
    if (c.writable_data !== undefined && typeof c.writable_data !== "boolean")
      throw new ContainerPluginError(spec.name, "invalid_manifest", "container.writable_data must be a boolean");
    this.sandboxPolicy(spec); // exec_tmp / data_quota_mb against the operator's policy
  }

  /**
   * What the manifest asks of the sandbox, checked against the operator's policy: an executable /tmp only when the
   * operator allows it, a data quota within the operator's cap.
   */
  sandboxPolicy(spec: ContainerPluginSpec): { execTmp: boolean; dataQuotaMb: number } {
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
  hash(spec: ContainerPluginSpec): string {
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

  /** The hardened create spec of `entry`'s container from `image` (`nodeBase`: hecate's own Node base image). */
  create(entry: Entry, image: string, nodeBase: boolean): ContainerCreateSpec {
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
    const host = pluginPaths(this.opts.home, spec.name);
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
}

function positive(v: number | undefined, dflt: number, plugin: string, field: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0)
    throw new ContainerPluginError(plugin, "invalid_manifest", `container.${field} must be a positive number`);
  return v;
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
