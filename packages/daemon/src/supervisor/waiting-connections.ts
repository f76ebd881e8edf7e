/**
 * Client connections of the plugin listener that wait for the main host: accepted while it (re)starts or restores
 * its plugins, or handed to a host that died before taking them. None is refused; past `max` waiting, more are
 * closed.
 */
import type { Socket } from "node:net";
import type { HostProcess } from "./host-process.js";

export class WaitingConnections {
  private readonly queue: Socket[] = [];
  /** The main host may receive connections: false from its death until its plugins are restored. */
  serving = true;

  constructor(private readonly max: number) {}

  /** Keeps `socket` for the next main host; false when the queue is full (the caller closes it). */
  hold(socket: Socket): boolean {
    if (this.queue.length >= this.max) return false;
    this.queue.push(socket);
    return true;
  }

  /** Connections handed to main host `proc` but never taken (it exited first) wait for the next one. */
  keepOrphansOf(proc: HostProcess): void {
    proc.on("orphans", (sockets: Socket[]) => this.queue.push(...sockets));
  }

  /** Hands the waiting connections to `main` (a client that gave up meanwhile is handed over all the same). */
  flush(main: HostProcess): void {
    for (const s of this.queue.splice(0)) if (!s.destroyed && !main.adopt(s)) s.destroy();
  }

  /** Closes every waiting connection (the hosts are closing). */
  destroyAll(): void {
    for (const s of this.queue.splice(0)) s.destroy();
  }
}
