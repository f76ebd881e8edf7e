/**
 * Everything that connects to one verified container socket, owned together: the proxy (requests, upgrades) and the
 * health probe's agent both dial `/proc/self/fd/{fd}` of a VerifiedSocket. Closing the link drains the proxy,
 * destroys the probe agent and only then closes the fd, so no connection of this link can ever dial a reused fd
 * number (which could by then be another plugin's socket).
 */
import { Agent, request } from "undici";
import { ContainerProxy, type ContainerProxyOptions } from "./proxy.js";
import type { VerifiedSocket } from "./verified-socket.js";

export class SocketLink {
  readonly proxy: ContainerProxy;
  /** One small agent for health probes (separate from the proxy pool so probes never queue behind requests). */
  private readonly probeAgent: Agent;
  private closing: Promise<void> | undefined;

  constructor(
    plugin: string,
    readonly socket: VerifiedSocket,
    proxy: Pick<ContainerProxyOptions, "headersTimeoutMs" | "onProtocolError"> = {},
  ) {
    this.proxy = new ContainerProxy({ plugin, socketPath: socket.path, ...proxy });
    this.probeAgent = new Agent({ connect: { socketPath: socket.path }, keepAliveTimeout: 1000, connections: 1 });
  }

  /** True when `GET path` answers 200 within `timeoutMs`. */
  async probe(path: string, timeoutMs: number): Promise<boolean> {
    if (this.closing) return false;
    try {
      const r = await request(`http://plugin${path}`, {
        dispatcher: this.probeAgent,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      await r.body.dump();
      return r.statusCode === 200;
    } catch {
      return false;
    }
  }

  /** Drains the proxy (deadline), then closes every connection and the fd. Idempotent. */
  close(drainMs = 0): Promise<void> {
    this.closing ??= (async () => {
      await this.proxy.drain(drainMs);
      await this.probeAgent.destroy().catch(() => {});
      this.socket.close();
    })();
    return this.closing;
  }
}
