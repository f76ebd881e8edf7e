/** Recent log lines of each plugin (bounded ring per plugin) with live followers, for GET .../logs. */
import { EventEmitter } from "node:events";

export interface LogLine {
  time: string;
  level: string;
  msg: string;
  plugin: string;
  fields?: Record<string, unknown>;
}

export class LogBook extends EventEmitter {
  private readonly rings = new Map<string, LogLine[]>();

  constructor(private readonly perPlugin = 1000) {
    super();
    this.setMaxListeners(0);
  }

  add(line: LogLine): void {
    let ring = this.rings.get(line.plugin);
    if (!ring) {
      ring = [];
      this.rings.set(line.plugin, ring);
    }
    ring.push(line);
    if (ring.length > this.perPlugin) ring.splice(0, ring.length - this.perPlugin);
    this.emit("line", line);
  }

  tail(plugin: string, n: number): LogLine[] {
    const ring = this.rings.get(plugin) ?? [];
    return n <= 0 ? [] : ring.slice(-n);
  }

  forget(plugin: string): void {
    this.rings.delete(plugin);
  }
}
