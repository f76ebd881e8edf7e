/**
 * Podman client.
 *
 * Container operations (create/start/stop/remove/inspect/list/events, image inspect) go through Podman's REST API
 * over its Unix socket (`podman system service --time=0 unix://...`, which runs without systemd), with undici and
 * `socketPath`. We use the Docker-compatible endpoints (`/v1.41/...`) for containers: their HostConfig fields
 * (ReadonlyRootfs, CapDrop, Ulimits, NanoCpus, PidsLimit, SecurityOpt) are stable and well documented, whereas
 * libpod's SpecGenerator silently ignores misspelt fields.
 *
 * Images are built/loaded with the CLI: `podman import` of a rootfs tar streamed on stdin and `podman load -i` of an
 * archive are one command each, whereas the API wants the whole archive as a request body plus a second call to
 * tag it. The CLI and the service share the same storage, so the service sees the images at once.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { Agent, request } from "undici";

export class PodmanError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly detail?: string,
  ) {
    super(message);
    this.name = "PodmanError";
  }
}

export interface ContainerCreateSpec {
  name: string;
  Image: string;
  Cmd?: string[];
  Entrypoint?: string[];
  User?: string;
  Env?: string[];
  Labels?: Record<string, string>;
  WorkingDir?: string;
  StopTimeout?: number;
  HostConfig: Record<string, unknown>;
}

export interface ContainerSummary {
  Id: string;
  Names: string[];
  Labels: Record<string, string>;
  State: string;
}

export interface ContainerInspect {
  Id: string;
  Name: string;
  State: { Status: string; Running: boolean; ExitCode: number; OOMKilled: boolean; Pid: number; Error?: string };
  Config: { Labels: Record<string, string>; User: string };
  HostConfig: Record<string, unknown> & {
    ReadonlyRootfs?: boolean;
    NetworkMode?: string;
    CapDrop?: string[];
    Memory?: number;
    NanoCpus?: number;
    PidsLimit?: number;
    SecurityOpt?: string[];
  };
}

export interface PodmanEvent {
  Type: string;
  Action: string;
  id?: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  status?: string;
}

/** One line of libpod's pull stream: `stream` (progress text), `error`, or the final `images` / `id`. */
export interface PullLine {
  stream?: string;
  error?: string;
  images?: string[];
  id?: string;
}

export interface PodmanClientOptions {
  /** Socket of the API service, e.g. `$HECATE_HOME/run/podman.sock`. */
  socketPath: string;
  /** podman binary, default `podman`. */
  bin?: string;
}

const API = "/v1.41";

/** Start time of a process (clock ticks since boot, /proc/<pid>/stat field 22), undefined when it is gone. */
function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

/** The pid recorded in `pidFile` when that process still runs (same start time) and serves `socketPath`. */
function adoptableService(pidFile: string, socketPath: string): number | undefined {
  try {
    const [pid, start] = readFileSync(pidFile, "utf8").trim().split(" ");
    const n = Number(pid);
    if (!Number.isInteger(n) || n <= 0 || processStartTime(n) !== start) return undefined;
    const cmdline = readFileSync(`/proc/${n}/cmdline`, "utf8").split("\0");
    return cmdline.includes("service") && cmdline.includes(`unix://${socketPath}`) ? n : undefined;
  } catch {
    return undefined;
  }
}

export class PodmanClient {
  readonly socketPath: string;
  readonly bin: string;
  private readonly agent: Agent;
  private service: ChildProcess | undefined;
  /** pid of a service started by an earlier run of the daemon (it crashed) that this client took over. */
  private adoptedPid: number | undefined;
  /** `<pid> <start time>` of the service we started: lets a restarted daemon tell it from a recycled pid. */
  private readonly pidFile: string;

  constructor(opts: PodmanClientOptions) {
    this.socketPath = opts.socketPath;
    this.pidFile = `${opts.socketPath}.pid`;
    this.bin = opts.bin ?? "podman";
    this.agent = new Agent({ connect: { socketPath: this.socketPath }, keepAliveTimeout: 10_000 });
  }

  /** True when the API answers on the socket. */
  async ping(): Promise<boolean> {
    try {
      const r = await request("http://podman/_ping", { dispatcher: this.agent, headersTimeout: 2000 });
      await r.body.text();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }

  /**
   * Starts `podman system service` on our socket unless one already answers there. The service is detached (own
   * process group) so it survives a daemon crash; a restarted daemon adopts it (see `adoptService`).
   * `stopService()` ends it if we started or adopted it.
   */
  async ensureService(timeoutMs = 15_000): Promise<void> {
    if (await this.ping()) {
      if (!this.service) this.adoptedPid = adoptableService(this.pidFile, this.socketPath);
      return;
    }
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o700 });
    const logFd = openSync(`${this.socketPath}.log`, "a");
    try {
      this.service = spawn(this.bin, ["system", "service", "--time=0", `unix://${this.socketPath}`], {
        detached: true,
        stdio: ["ignore", logFd, logFd],
        // conmon drops files (e.g. `oom` after an OOM kill) into its working dir: keep them in our run dir.
        cwd: dirname(this.socketPath),
      });
    } finally {
      closeSync(logFd);
    }
    let spawnError: Error | undefined;
    this.service.once("error", (e) => {
      spawnError = e;
    });
    this.service.unref();
    if (this.service.pid) {
      const start = processStartTime(this.service.pid);
      if (start) writeFileSync(this.pidFile, `${this.service.pid} ${start}\n`);
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (spawnError) throw new PodmanError(`cannot start podman system service: ${spawnError.message}`);
      if (existsSync(this.socketPath) && (await this.ping())) return;
      await sleep(50);
    }
    throw new PodmanError(`podman system service did not answer on ${this.socketPath} within ${timeoutMs} ms`);
  }

  /**
   * Stops the API service if this client started it, or adopted it from a crashed daemon of this home. By pid, never
   * by name, and only after checking that the pid is still that very process (same start time, same socket).
   */
  async stopService(): Promise<void> {
    const svc = this.service;
    this.service = undefined;
    const adopted = this.adoptedPid;
    this.adoptedPid = undefined;
    if (adopted !== undefined && adoptableService(this.pidFile, this.socketPath) === adopted) {
      try {
        process.kill(adopted, "SIGTERM");
      } catch {}
      for (let i = 0; i < 60 && processStartTime(adopted) !== undefined; i++) await sleep(50);
    }
    if (svc || adopted !== undefined) rmSync(this.pidFile, { force: true });
    if (svc?.pid && svc.exitCode === null) {
      const exited = new Promise<void>((resolve) => svc.once("exit", () => resolve()));
      try {
        process.kill(svc.pid, "SIGTERM");
      } catch {
        return;
      }
      await Promise.race([exited, sleep(3000)]);
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** One JSON API call; non-2xx -> PodmanError with the API's message. */
  async api<T = unknown>(
    method: "GET" | "POST" | "DELETE",
    path: string,
    body?: unknown,
    opts: { okStatuses?: number[]; timeoutMs?: number } = {},
  ): Promise<{ status: number; data: T }> {
    const r = await request(`http://podman${API}${path}`, {
      method,
      dispatcher: this.agent,
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      headersTimeout: opts.timeoutMs ?? 60_000,
      bodyTimeout: opts.timeoutMs ?? 60_000,
    });
    const text = await r.body.text();
    const ok = (r.statusCode >= 200 && r.statusCode < 300) || opts.okStatuses?.includes(r.statusCode);
    if (!ok) {
      let msg = text;
      try {
        msg = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {}
      throw new PodmanError(`podman ${method} ${path}: ${r.statusCode} ${msg}`, r.statusCode, msg);
    }
    return { status: r.statusCode, data: (text ? JSON.parse(text) : undefined) as T };
  }

  async imageExists(ref: string): Promise<boolean> {
    const { status } = await this.api("GET", `/images/${encodeURIComponent(ref)}/json`, undefined, {
      okStatuses: [404],
    });
    return status === 200;
  }

  async createContainer(spec: ContainerCreateSpec): Promise<string> {
    const { name, ...body } = spec;
    const { data } = await this.api<{ Id: string }>(
      "POST",
      `/containers/create?name=${encodeURIComponent(name)}`,
      body,
    );
    return data.Id;
  }

  async startContainer(id: string): Promise<void> {
    await this.api("POST", `/containers/${id}/start`, undefined, { okStatuses: [304] });
  }

  /** SIGTERM, then SIGKILL after `timeoutS`. Already stopped or gone is fine. */
  async stopContainer(id: string, timeoutS = 5): Promise<void> {
    await this.api("POST", `/containers/${id}/stop?t=${timeoutS}`, undefined, {
      okStatuses: [304, 404],
      timeoutMs: (timeoutS + 30) * 1000,
    });
  }

  /** SIGKILL now (an unhealthy container gets no grace period). Not running or gone is fine. */
  async killContainer(id: string): Promise<void> {
    await this.api("POST", `/containers/${id}/kill?signal=KILL`, undefined, { okStatuses: [404, 409, 500] });
  }

  async removeContainer(id: string): Promise<void> {
    await this.api("DELETE", `/containers/${id}?force=true&v=true`, undefined, { okStatuses: [404] });
  }

  async inspectContainer(id: string): Promise<ContainerInspect | null> {
    const { status, data } = await this.api<ContainerInspect>("GET", `/containers/${id}/json`, undefined, {
      okStatuses: [404],
    });
    return status === 404 ? null : data;
  }

  /** Containers (running or not) carrying a label (`key` or `key=value`). */
  async listContainers(label: string): Promise<ContainerSummary[]> {
    const filters = encodeURIComponent(JSON.stringify({ label: [label] }));
    const { data } = await this.api<ContainerSummary[]>("GET", `/containers/json?all=true&filters=${filters}`);
    return data;
  }

  /**
   * Streams container events matching a label until `signal` aborts. Resolves when the stream ends; rejects on
   * connection errors (the caller reconnects).
   */
  async events(label: string, onEvent: (e: PodmanEvent) => void, signal: AbortSignal): Promise<void> {
    const filters = encodeURIComponent(JSON.stringify({ label: [label], type: ["container"] }));
    const r = await request(`http://podman${API}/events?stream=true&filters=${filters}`, {
      dispatcher: this.agent,
      signal,
      bodyTimeout: 0,
      headersTimeout: 10_000,
    });
    if (r.statusCode !== 200) throw new PodmanError(`podman events: ${r.statusCode} ${await r.body.text()}`);
    let buf = "";
    for await (const chunk of r.body) {
      buf += (chunk as Buffer).toString("utf8");
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) {
          try {
            onEvent(JSON.parse(line) as PodmanEvent);
          } catch {}
        }
        nl = buf.indexOf("\n");
      }
    }
  }

  /**
   * Follows a container's stdout/stderr from `sinceSeconds` (fractional Unix time) until it stops or `signal` aborts,
   * one call per line. The Docker-compatible endpoint multiplexes both streams for containers without a TTY:
   * frames of an 8-byte header (stream 1 = stdout, 2 = stderr; big-endian payload size) and the payload.
   */
  async followLogs(
    id: string,
    sinceSeconds: number,
    onLine: (stream: "stdout" | "stderr", line: string) => void,
    signal: AbortSignal,
  ): Promise<void> {
    const r = await request(
      `http://podman${API}/containers/${id}/logs?follow=true&stdout=true&stderr=true&since=${sinceSeconds.toFixed(3)}`,
      { dispatcher: this.agent, signal, bodyTimeout: 0, headersTimeout: 10_000 },
    );
    if (r.statusCode !== 200) throw new PodmanError(`podman logs: ${r.statusCode} ${await r.body.text()}`);
    let frames: Buffer = Buffer.alloc(0);
    const partial = { stdout: "", stderr: "" };
    const emit = (stream: "stdout" | "stderr", text: string) => {
      const lines = (partial[stream] + text).split("\n");
      partial[stream] = lines.pop() ?? "";
      for (const line of lines) onLine(stream, line);
      // A plugin printing without newlines must not grow our buffer without bound.
      if (partial[stream].length > 65_536) {
        onLine(stream, partial[stream]);
        partial[stream] = "";
      }
    };
    for await (const chunk of r.body) {
      frames = frames.length ? Buffer.concat([frames, chunk as Buffer]) : (chunk as Buffer);
      while (frames.length >= 8) {
        const size = frames.readUInt32BE(4);
        if (frames.length < 8 + size) break;
        emit(frames[0] === 2 ? "stderr" : "stdout", frames.subarray(8, 8 + size).toString("utf8"));
        frames = frames.subarray(8 + size);
      }
    }
    for (const stream of ["stdout", "stderr"] as const) if (partial[stream]) onLine(stream, partial[stream]);
  }

  /** `podman import` of a rootfs tar from a stream (CLI: see the header comment). */
  async importImage(tar: Readable, ref: string, changes: string[]): Promise<void> {
    const args = ["import"];
    for (const c of changes) args.push("--change", c);
    args.push("-", ref);
    await this.cli(args, tar);
  }

  /** `podman load -i archive`; returns the image names it reports. */
  async loadImage(archive: string): Promise<string[]> {
    const out = await this.cli(["load", "-q", "-i", archive]);
    return [...out.matchAll(/Loaded image(?:\(s\))?:\s*(.+)/g)].flatMap((m) => m[1].split(",").map((s) => s.trim()));
  }

  async saveImage(ref: string, archive: string): Promise<void> {
    await this.cli(["save", "--format", "oci-archive", "-o", archive, ref]);
  }

  /**
   * Pulls `reference` through libpod's `POST /libpod/images/pull` (the Docker-compatible endpoint reports bytes but
   * cannot reach a plain-HTTP registry, and Podman 4's libpod stream reports each blob as its copy starts, not bytes).
   * Calls `onLine` with every progress line; resolves with the image id. Aborting `signal` closes the connection,
   * which cancels the pull in Podman (its request context ends). Credentials go in `X-Registry-Auth` only.
   */
  async pullImage(
    reference: string,
    opts: { tlsVerify: boolean; auth?: { username: string; password: string } | null; signal?: AbortSignal },
    onLine: (line: PullLine) => void,
  ): Promise<string> {
    const q = new URLSearchParams({ reference, tlsVerify: String(opts.tlsVerify), policy: "always" });
    const headers: Record<string, string> = {};
    // Go's base64.URLEncoding: URL alphabet, with padding.
    if (opts.auth)
      headers["x-registry-auth"] = Buffer.from(JSON.stringify(opts.auth))
        .toString("base64")
        .replaceAll("+", "-")
        .replaceAll("/", "_");
    const r = await request(`http://podman/v4.0.0/libpod/images/pull?${q}`, {
      method: "POST",
      dispatcher: this.agent,
      headers,
      signal: opts.signal,
      headersTimeout: 60_000,
      bodyTimeout: 0,
    });
    if (r.statusCode !== 200) {
      const text = await r.body.text();
      let msg = text;
      try {
        msg = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {}
      throw new PodmanError(`podman pull ${reference}: ${r.statusCode} ${msg}`, r.statusCode, msg);
    }
    let id: string | undefined;
    let error: string | undefined;
    let buf = "";
    for await (const chunk of r.body) {
      buf += (chunk as Buffer).toString("utf8");
      for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
        const text = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!text) continue;
        let line: PullLine;
        try {
          line = JSON.parse(text) as PullLine;
        } catch {
          continue;
        }
        if (line.error) error = line.error;
        if (line.id) id = line.id;
        onLine(line);
      }
    }
    if (error) throw new PodmanError(`podman pull ${reference}: ${error}`, undefined, error);
    if (!id) throw new PodmanError(`podman pull ${reference}: the stream ended without an image id`);
    return id;
  }

  /** The image's id, repo digests and labels, or null when it is not present. */
  async inspectImage(
    ref: string,
  ): Promise<{ Id: string; RepoDigests: string[]; Config: { Labels?: Record<string, string> | null } } | null> {
    const { status, data } = await this.api<{
      Id: string;
      RepoDigests: string[];
      Config: { Labels?: Record<string, string> | null };
    }>("GET", `/images/${encodeURIComponent(ref)}/json`, undefined, { okStatuses: [404] });
    return status === 404 ? null : data;
  }

  async removeImage(ref: string): Promise<void> {
    await this.api("DELETE", `/images/${encodeURIComponent(ref)}?force=true`, undefined, { okStatuses: [404] });
  }

  /** Last log lines of a container (its stdout and stderr interleaved as podman prints them). */
  async logs(id: string, tail = 40): Promise<string> {
    return this.cli(["logs", "--tail", String(tail), id], undefined, true);
  }

  cli(args: string[], stdin?: Readable, withStderr = false): Promise<string> {
    return new Promise((resolve, reject) => {
      const p = spawn(this.bin, args, { stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      p.stdout!.on("data", (d) => {
        out += d;
      });
      p.stderr!.on("data", (d) => {
        err += d;
        if (withStderr) out += d;
      });
      p.on("error", (e) => reject(new PodmanError(`cannot run ${this.bin}: ${e.message}`)));
      p.on("close", (code) => {
        if (code === 0) resolve(out);
        else reject(new PodmanError(`${this.bin} ${args.join(" ")} exited ${code}: ${err.trim()}`, undefined, err));
      });
      if (stdin && p.stdin) {
        stdin.on("error", (e) => p.stdin!.destroy(e));
        p.stdin.on("error", () => {});
        stdin.pipe(p.stdin);
      }
    });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
