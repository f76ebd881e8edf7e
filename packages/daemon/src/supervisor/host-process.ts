/**
 * The supervisor's handle on one plugin-host process: forks `host/main.js`, boots it, sends requests and matches
 * replies, hands it accepted client sockets, and reports its events and its death. It never restarts by itself:
 * PluginHosts decides what a death means (see ./host-restore.ts).
 */
import { type ChildProcess, fork } from "node:child_process";
import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import type { HostBoot, HostErrorInfo, HostEvent, HostRequest } from "../host/protocol.js";

const HOST_MAIN = new URL("../host/main.js", import.meta.url);

/** A request whose host died before it answered. */
export class HostDiedError extends Error {
  constructor(
    readonly hostId: number,
    readonly exit: HostExit,
  ) {
    super(`plugin host ${hostId} died (${describeExit(exit)})`);
    this.name = "HostDiedError";
  }
}

/** A request the host answered with an error. */
export class HostRequestError extends Error {
  readonly stage?: string;
  readonly code?: string;
  constructor(info: HostErrorInfo) {
    super(info.message);
    this.name = "HostRequestError";
    this.stage = info.stage;
    this.code = info.code;
  }
}

export interface HostExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function describeExit(e: HostExit): string {
  return e.signal ? `signal ${e.signal}` : `exit code ${e.code}`;
}

type Pending = { resolve: (v: unknown) => void; reject: (e: Error) => void };
type RequestBody = HostRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

/**
 * Events: `event` (HostEvent from the host), `exit` (HostExit; `expected` true after close()), `orphans` (sockets
 * handed over but never acknowledged by a host that died: to be handed to the next one).
 */
export class HostProcess extends EventEmitter {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closing = false;
  private connSeq = 0;
  /** Sockets sent to the host and not yet acknowledged: still ours (the host may never have received them). */
  private readonly unacked = new Map<number, Socket>();
  exited: HostExit | undefined;
  pid: number | undefined;

  constructor(readonly boot: Omit<HostBoot, "t">) {
    super();
  }

  get id(): number {
    return this.boot.hostId;
  }

  get alive(): boolean {
    return this.child !== undefined && this.exited === undefined;
  }

  /** Forks and boots the host; resolves once it is ready to serve (rejects if it dies first). */
  start(timeoutMs = 15_000): Promise<void> {
    const child = fork(HOST_MAIN, [], {
      serialization: "advanced",
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      execArgv: [],
      env: hostEnv(),
    });
    this.child = child;
    this.pid = child.pid;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`plugin host ${this.id} not ready within ${timeoutMs} ms`));
      }, timeoutMs);
      child.on("message", (m: HostEvent) => {
        if (m.t === "ready") {
          clearTimeout(timer);
          resolve();
        } else if (m.t === "reply") {
          const p = this.pending.get(m.id);
          if (!p) return;
          this.pending.delete(m.id);
          if (m.ok) p.resolve(m.value);
          else p.reject(new HostRequestError(m.error));
        } else if (m.t === "conn-ack") {
          // The host has its own fd now: close ours (this does not end the connection).
          this.unacked.get(m.seq)?.destroy();
          this.unacked.delete(m.seq);
        } else this.emit("event", m);
      });
      child.on("error", () => {}); // e.g. EPIPE on a send racing the death: the exit event reports it
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const exit = { code, signal };
        this.exited = exit;
        for (const p of this.pending.values()) p.reject(new HostDiedError(this.id, exit));
        this.pending.clear();
        reject(new HostDiedError(this.id, exit));
        this.emit("exit", exit, this.closing);
        this.emit(
          "orphans",
          [...this.unacked.values()].filter((s) => !s.destroyed),
        );
        this.unacked.clear();
      });
      child.send({ t: "boot", ...this.boot } satisfies HostBoot);
    });
  }

  request<T>(body: RequestBody): Promise<T> {
    const child = this.child;
    if (!child || this.exited)
      return Promise.reject(new HostDiedError(this.id, this.exited ?? { code: null, signal: null }));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      child.send({ ...body, id } as HostRequest);
    });
  }

  /**
   * Hands an accepted client connection to the host. The supervisor keeps its copy until the host acknowledges it:
   * a host that dies before that never had it, and the connection goes to the next host (`orphans` event).
   */
  adopt(socket: Socket): boolean {
    if (!this.child || this.exited || !this.child.connected) return false;
    const seq = ++this.connSeq;
    this.unacked.set(seq, socket);
    try {
      this.child.send({ t: "conn", seq }, socket, { keepOpen: true });
      return true;
    } catch {
      this.unacked.delete(seq);
      return false;
    }
  }

  /** Graceful stop: the host unloads everything and exits; killed if it takes longer than `deadlineMs`. */
  async close(deadlineMs = 15_000): Promise<void> {
    this.closing = true;
    if (!this.alive) return;
    const exited = new Promise<void>((resolve) => this.once("exit", () => resolve()));
    const timer = setTimeout(() => this.kill("SIGKILL"), deadlineMs);
    this.request({ t: "close" }).catch(() => {});
    await exited;
    clearTimeout(timer);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.alive) this.child?.kill(signal);
  }
}

/**
 * The plugin host's environment: the daemon's, without HECATE_STORE_URL. In cluster mode a plugin gets its store URL
 * through its config, where the SDK keeps the password to itself; in the environment a plugin that dumps
 * `process.env` (a diagnostics route, a crash report) would show it.
 */
function hostEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== "HECATE_STORE_URL"));
}
