/**
 * Container plugins installed from an OCI registry (`oci://REGISTRY/REPO[:TAG|@sha256:DIGEST]`), the original's pull
 * flow on the `plugin` aggregate:
 *
 *   resolve (before anything is recorded: digest, layers, the image's `io.hecate.manifest` label, validated)
 *   -> install_plugin_v1 / upgrade_plugin_v1 (with `oci`) -> [process manager] start_oci_pull_v1 (PULLING)
 *   -> the pull runs through Podman's REST API in the background, report_oci_pull_progress_v1 as layers go
 *   -> complete_oci_pull_v1 (or fail_oci_pull_v1; cancel_oci_pull_v1 from `hecate plugin cancel`)
 *   -> [process manager] the package dir is laid out (manifest.json, `container.image` pinned to the digest)
 *   -> extract_plugin_package_v1 -> the usual activate -> load (an upgrade swaps generations with zero downtime).
 *
 * The pull is not run inside the process manager's handler (a minutes-long download would hold up every other
 * plugin's lifecycle): the handler starts it and returns. A daemon killed during a pull finds the plugin PULLING at
 * boot and starts the pull again (Podman keeps the layers it completed); every outcome is a recorded event, so no
 * plugin stays PULLING. The pulled image is the container spec's `container.image` exactly as an archive-loaded one.
 */

import { writeManifestPackage } from "@hecate/package";
import type { PluginManifest } from "@hecate/sdk";
import type { ProcessManagerContext, RecordedEvent } from "@hecate/store";
import type { Logger } from "pino";
import { formatOciReference, type OciReference, parseOciReference, pinnedImage } from "../container/oci-reference.js";
import { PodmanClient, type PullLine } from "../container/podman.js";
import { PullProgress, progressed } from "../container/pull-progress.js";
import { MANIFEST_LABEL, RegistryError, resolveImage } from "../container/registry-client.js";
import { registryCredentials, registryUsesPlainHttp } from "../container/registry-config.js";
import { Flags, hasFlag, type OciSource, type PluginCommand, type PluginEvent, type PluginState } from "./aggregate.js";

/** A refused `oci://` install (the admin API maps `code` to a status; the refusal is recorded like a package's). */
export class OciInstallError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "OciInstallError";
  }
}

export interface OciFlowOptions {
  home: string;
  logger: Logger;
  validateManifest(value: unknown): PluginManifest;
  packageDir(name: string): string;
  state(name: string): PluginState | undefined;
  states(): Iterable<PluginState>;
  dispatch(name: string, cmd: PluginCommand, ctx?: ProcessManagerContext): Promise<unknown>;
  /** Env (HECATE_REQUIRE_DIGEST); default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Podman's API socket; default `$HECATE_HOME/run/podman.sock`. */
  podmanSocket?: string;
  /**
   * Cluster mode: this node's id. The node that took the install runs the recorded pull (start / progress /
   * complete); every other node pulls the digest-pinned image itself when it lays the package out.
   */
  nodeId?: string;
  /** Cluster mode: this node's own outcome (its row in the cluster's per-node status). */
  nodeStatus?(name: string, status: "extracting" | "extracted" | "extract_failed", extra?: object): Promise<void>;
}

export interface ResolvedOciPackage {
  manifest: PluginManifest;
  oci: OciSource;
}

export class OciFlow {
  private readonly pulls = new Map<string, { generation: number; abort: AbortController; done: Promise<void> }>();
  private podmanClient: PodmanClient | undefined;
  private closed = false;

  constructor(private readonly o: OciFlowOptions) {}

  private get podman(): PodmanClient {
    this.podmanClient ??= new PodmanClient({ socketPath: this.o.podmanSocket ?? `${this.o.home}/run/podman.sock` });
    return this.podmanClient;
  }

  /**
   * Resolves `source` to a digest and the plugin manifest its image carries, without pulling layers. Throws
   * OciInstallError (invalid_reference, digest_required, registry errors, invalid_manifest...).
   */
  async resolve(source: string): Promise<ResolvedOciPackage> {
    let ref: OciReference;
    try {
      ref = parseOciReference(source);
    } catch (err) {
      throw new OciInstallError("invalid_reference", (err as Error).message);
    }
    const env = this.o.env ?? process.env;
    if (env.HECATE_REQUIRE_DIGEST === "1" && !ref.digest)
      throw new OciInstallError(
        "digest_required",
        `HECATE_REQUIRE_DIGEST=1: ${source} has no digest; use ${formatOciReference({ ...ref, tag: null, digest: "sha256:<digest>" })}`,
      );
    let resolved: Awaited<ReturnType<typeof resolveImage>>;
    try {
      resolved = await resolveImage(ref, {
        plainHttp: registryUsesPlainHttp(this.o.home, ref.registry),
        credentials: registryCredentials(this.o.home, ref.registry),
      });
    } catch (err) {
      if (err instanceof RegistryError) throw new OciInstallError(err.code, err.message);
      throw err;
    }
    let manifest: PluginManifest;
    try {
      manifest = this.o.validateManifest(resolved.pluginManifest);
    } catch (err) {
      throw new OciInstallError("invalid_manifest", `${MANIFEST_LABEL} of ${source}: ${(err as Error).message}`);
    }
    if (manifest.plugin_type !== "container")
      throw new OciInstallError("invalid_manifest", `${source}: an image's plugin must be plugin_type "container"`);
    if (manifest.container?.image_archive)
      throw new OciInstallError("invalid_manifest", `${source}: container.image_archive has no place in an image`);
    const image = pinnedImage(ref, resolved.digest);
    return {
      manifest: { ...manifest, container: { ...manifest.container, image } },
      oci: {
        reference: formatOciReference(ref),
        image,
        digest: resolved.digest,
        layers: resolved.layers.length,
        bytes: resolved.layers.reduce((n, l) => n + l.size, 0),
      },
    };
  }

  /** Process-manager steps of the pull flow; false for an event this flow does not handle. */
  async handle(e: RecordedEvent, name: string, s: PluginState, ctx: ProcessManagerContext): Promise<boolean> {
    const ev = e as unknown as PluginEvent;
    switch (ev.type) {
      case "plugin_installed_v1":
      case "plugin_upgraded_v1":
        if (!ev.data.oci) return false;
        if (ev.data.generation === s.generation && hasFlag(s, Flags.EXTRACTING) && !hasFlag(s, Flags.PULLING)) {
          // Cluster: the pull is the accepting node's (named in the install's metadata, passed on to the start).
          const by = e.metadata.node;
          const metadata = typeof by === "string" ? { metadata: { node: by } } : {};
          const start = { type: "start_oci_pull_v1" as const, data: { generation: ev.data.generation }, ...metadata };
          await this.o.dispatch(name, start, ctx);
        }
        return true;
      case "oci_pull_started_v1":
        if (this.o.nodeId && typeof e.metadata.node === "string" && e.metadata.node !== this.o.nodeId) return true;
        if (ev.data.generation === s.generation && hasFlag(s, Flags.PULLING)) this.startPull(name, s);
        return true;
      case "oci_pull_completed_v1":
        if (ev.data.generation === s.generation && hasFlag(s, Flags.EXTRACTING)) await this.layOut(name, s, ctx);
        return true;
      case "plugin_removed_v1":
        await this.stopPull(name); // removed while pulling: the pull ends; the removal itself goes on
        return false;
      case "oci_pull_failed_v1":
      case "oci_pull_cancelled_v1":
        await this.stopPull(name);
        if (ev.type === "oci_pull_cancelled_v1" && ev.data.first_install && hasFlag(s, Flags.REMOVED))
          await this.removeUnusedImage(name, s.oci?.image);
        return true;
      default:
        return false;
    }
  }

  /** Boot: every plugin left PULLING by a killed daemon pulls again (or fails, recorded): none stays PULLING. */
  resume(): void {
    for (const s of this.o.states())
      if (s.name && hasFlag(s, Flags.PULLING) && !hasFlag(s, Flags.REMOVED) && !this.pulls.has(s.name)) {
        this.o.logger.info({ plugin: s.name, image: s.oci?.image }, "resuming an image pull a stop interrupted");
        this.startPull(s.name, s);
      }
  }

  /** `hecate plugin cancel NAME`: records cancel_oci_pull_v1 (not_pulling when none) and ends the pull. */
  async cancel(name: string): Promise<void> {
    await this.o.dispatch(name, { type: "cancel_oci_pull_v1", data: { reason: "cancelled by the operator" } });
    await this.stopPull(name);
  }

  async close(): Promise<void> {
    this.closed = true;
    const running = [...this.pulls.values()];
    for (const p of running) p.abort.abort();
    await Promise.all(running.map((p) => p.done));
  }

  /**
   * After the plugin hosts closed (they stop the Podman service they use): stops the service if the pulls started or
   * adopted it and it still runs (by its recorded pid and start time, see PodmanClient.stopService).
   */
  async stopPodman(): Promise<void> {
    await this.podmanClient?.stopService();
    await this.podmanClient?.close();
    this.podmanClient = undefined;
  }

  private async stopPull(name: string): Promise<void> {
    const p = this.pulls.get(name);
    if (!p) return;
    p.abort.abort();
    await p.done;
  }

  private startPull(name: string, s: PluginState): void {
    const src = s.oci;
    if (!src || this.closed) return;
    const running = this.pulls.get(name);
    if (running?.generation === s.generation) return;
    running?.abort.abort();
    const abort = new AbortController();
    const done = this.pull(name, s.generation, src, abort.signal)
      .catch((err) => this.o.logger.error({ plugin: name, err }, "recording the pull's outcome failed"))
      .finally(() => {
        if (this.pulls.get(name)?.abort === abort) this.pulls.delete(name);
      });
    this.pulls.set(name, { generation: s.generation, abort, done });
  }

  /** Pulls the digest-pinned image and checks what Podman stored: that digest, with a plugin manifest label. */
  private async pullPinned(src: OciSource, signal?: AbortSignal, onLine: (line: PullLine) => void = () => {}) {
    const registry = parseOciReference(src.reference).registry;
    await this.podman.ensureService();
    const id = await this.podman.pullImage(
      src.image,
      {
        // Plain HTTP only where registry-config allows it: a loopback registry or one set insecure.
        tlsVerify: !registryUsesPlainHttp(this.o.home, registry),
        auth: registryCredentials(this.o.home, registry),
        signal,
      },
      onLine,
    );
    const inspected = await this.podman.inspectImage(src.image);
    const repo = src.image.slice(0, src.image.lastIndexOf("@"));
    if (!inspected?.RepoDigests?.includes(`${repo}@${src.digest}`))
      throw new OciInstallError("digest_mismatch", `the pulled image ${id} is not ${src.image}`);
    if (typeof inspected.Config?.Labels?.[MANIFEST_LABEL] !== "string")
      throw new OciInstallError("no_plugin_manifest", `the pulled image ${id} has no ${MANIFEST_LABEL} label`);
    return id;
  }

  private async pull(name: string, generation: number, src: OciSource, signal: AbortSignal): Promise<void> {
    const progress = new PullProgress({ layers: src.layers, bytes: src.bytes });
    // Progress reports are appended one after the other, never racing the outcome.
    let reports: Promise<unknown> = Promise.resolve();
    let last: { layers_done: number; bytes_done: number } | undefined;
    const report = () => {
      const p = progress.snapshot();
      if (!progressed(last, p, src.bytes)) return;
      last = p;
      reports = reports.then(() =>
        this.o.dispatch(name, { type: "report_oci_pull_progress_v1", data: { generation, ...p } }).catch(() => {}),
      );
    };
    const sampler = setInterval(() => {
      progress.sample();
      report();
    }, 250);
    let outcome: PluginCommand;
    try {
      const id = await this.pullPinned(src, signal, (line: PullLine) => {
        progress.take(line);
        report();
      });
      clearInterval(sampler);
      progress.finish();
      report();
      outcome = { type: "complete_oci_pull_v1", data: { generation, digest: src.digest, image_id: id } };
    } catch (err) {
      clearInterval(sampler);
      progress.release();
      if (signal.aborted) {
        await reports;
        return; // cancelled or closing: cancel_oci_pull_v1 is recorded, or the next boot resumes the pull
      }
      const e = err as Error & { code?: unknown };
      const code = typeof e.code === "string" ? e.code : pullErrorCode(e.message);
      this.o.logger.warn({ plugin: name, image: src.image, code, err: e.message }, "image pull failed");
      outcome = { type: "fail_oci_pull_v1", data: { generation, code, message: e.message } };
    }
    await reports;
    if (signal.aborted) return;
    await this.o.dispatch(name, outcome).catch((err) => {
      // cancelled (not_pulling) or superseded (stale_command) meanwhile: nothing to record
      this.o.logger.info({ plugin: name, err: (err as Error).message }, "pull outcome not recorded");
    });
  }

  /** The package dir of an image plugin: the manifest from the image, `container.image` pinned to the digest. */
  private async layOut(name: string, s: PluginState, ctx: ProcessManagerContext): Promise<void> {
    const src = s.oci!;
    let outcome: PluginCommand;
    try {
      if (this.o.nodeId) {
        // Cluster: another node recorded the pull; this node needs the image in its own Podman.
        await this.o.nodeStatus?.(name, "extracting");
        if (!(await this.podman.inspectImage(src.image).catch(() => null))) {
          await this.podman.ensureService();
          if (!(await this.podman.inspectImage(src.image))) {
            this.o.logger.info({ plugin: name, image: src.image }, "pulling the image on this node");
            await this.pullPinned(src);
          }
        }
      }
      const inspected = await this.podman.inspectImage(src.image);
      const label = inspected?.Config?.Labels?.[MANIFEST_LABEL];
      if (typeof label !== "string") throw new OciInstallError("no_plugin_manifest", `${src.image} is not present`);
      const manifest = this.o.validateManifest(JSON.parse(label));
      if (manifest.name !== name) throw new OciInstallError("name_mismatch", `the image is for ${manifest.name}`);
      const pinned = { ...manifest, container: { ...manifest.container, image: src.image } };
      const r = await writeManifestPackage(this.o.packageDir(name), pinned);
      outcome = {
        type: "extract_plugin_package_v1",
        data: { generation: s.generation, version: manifest.version, files: r.files, bytes: r.bytes },
      };
    } catch (err) {
      const e = err as Error & { code?: unknown };
      outcome = {
        type: "fail_plugin_extract_v1",
        data: {
          generation: s.generation,
          code: typeof e.code === "string" ? e.code : "extract_error",
          message: e.message,
        },
      };
    }
    if (outcome.type === "extract_plugin_package_v1")
      await this.o.nodeStatus?.(name, "extracted", { version: outcome.data.version });
    else if (outcome.type === "fail_plugin_extract_v1")
      await this.o.nodeStatus?.(name, "extract_failed", { error: `${outcome.data.code}: ${outcome.data.message}` });
    await this.o.dispatch(name, outcome, ctx);
  }

  /** After a cancelled first install: the image goes unless another installed plugin runs it. */
  private async removeUnusedImage(name: string, image: string | undefined): Promise<void> {
    if (!image) return;
    for (const s of this.o.states()) if (s.name !== name && s.oci_image === image && !hasFlag(s, Flags.REMOVED)) return;
    await this.podman.removeImage(image).catch(() => {});
  }
}

function pullErrorCode(message: string): string {
  if (/connection refused|no such host|i\/o timeout|pinging container registry/i.test(message))
    return "registry_unreachable";
  if (/unauthorized|authentication required|denied/i.test(message)) return "unauthorized";
  if (/manifest unknown|not found/i.test(message)) return "manifest_unknown";
  return "pull_failed";
}
