/**
 * Progress of an image pull through Podman's libpod API: layers and bytes.
 *
 * Podman 4's libpod pull stream says when each blob's copy starts (`Copying blob sha256:…`) and when the config is
 * copied (every layer done), not how many bytes arrived; the Docker-compatible endpoint reports bytes but cannot pull
 * from a plain-HTTP registry. Bytes are therefore read where Podman writes them: containers/image stores each blob
 * it downloads in a file of a fresh temp dir `storage*` under its big-files temp dir (`/var/tmp`, containers.conf
 * `image_copy_tmp_dir`) before committing the layers, so the sizes of the files in the dir this pull created are its
 * bytes received (compressed, as the manifest's layer sizes). Layers Podman already has are never downloaded: they
 * count when the config is copied. With several pulls at once, each claims the first new dir nobody claimed; if the
 * claims cross (two pulls starting in the same instant) the byte counts are swapped, never the outcome. A claimed dir
 * that disappears (its pull committed) is given up and the next fresh one claimed, so a pull that claimed the dir of
 * another process's pull (another daemon on the machine) does not stay at 0 bytes.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import type { PullLine } from "./podman.js";

export interface PullTotals {
  layers: number;
  bytes: number;
}

const claimed = new Set<string>();

export class PullProgress {
  private readonly started = new Set<string>();
  private allDone = false;
  private received = 0;
  private dir: string | undefined;
  private readonly before: Set<string>;

  constructor(
    private readonly totals: PullTotals,
    private readonly tmpDir = "/var/tmp",
  ) {
    this.before = new Set(this.storageDirs());
  }

  private storageDirs(): string[] {
    try {
      return readdirSync(this.tmpDir).filter((n) => n.startsWith("storage"));
    } catch {
      return [];
    }
  }

  /** Takes a line of the pull stream. */
  take(line: PullLine): void {
    const text = line.stream ?? "";
    const blob = text.match(/Copying blob (sha256:[a-f0-9]{64})/);
    if (blob) this.started.add(blob[1]);
    // Layers are copied before the config: every layer is complete now.
    if (/Copying config/.test(text)) this.finish();
  }

  /** Reads the bytes received so far from this pull's blob files (see the header). */
  sample(): void {
    if (this.allDone) return;
    if (!this.dir) {
      const fresh = this.storageDirs().find((n) => !this.before.has(n) && !claimed.has(n));
      if (!fresh) return;
      this.dir = fresh;
      claimed.add(fresh);
    }
    let sum = 0;
    try {
      for (const f of readdirSync(join(this.tmpDir, this.dir))) sum += statSync(join(this.tmpDir, this.dir, f)).size;
    } catch {
      // Removed meanwhile: its pull committed. If that was another pull (another process's, started in the same
      // instant), this one's dir is still to be found: never claim that dir again, and look for a fresh one. If it
      // was this pull's own, the config line says the rest.
      claimed.delete(this.dir);
      this.before.add(this.dir);
      this.dir = undefined;
      return;
    }
    this.received = Math.max(this.received, Math.min(sum, this.totals.bytes));
  }

  finish(): void {
    this.allDone = true;
    this.received = this.totals.bytes;
    this.release();
  }

  release(): void {
    if (this.dir) claimed.delete(this.dir);
  }

  snapshot(): { layers_done: number; bytes_done: number } {
    return { layers_done: this.allDone ? this.totals.layers : 0, bytes_done: this.received };
  }
}

/**
 * Whether a new snapshot is worth recording: the layer count changed, or the bytes moved by at least `step` of the
 * total (a pull records a few dozen progress events, not one per sample).
 */
export function progressed(
  last: { layers_done: number; bytes_done: number } | undefined,
  now: { layers_done: number; bytes_done: number },
  totalBytes: number,
  step = 0.02,
): boolean {
  if (!last) return now.layers_done > 0 || now.bytes_done > 0;
  if (now.layers_done !== last.layers_done) return true;
  return now.bytes_done - last.bytes_done >= Math.max(1, totalBytes * step);
}
