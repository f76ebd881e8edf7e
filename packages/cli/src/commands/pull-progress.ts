/**
 * The progress bar of an image pull (`hecate plugin install oci://…`): one line per `oci_pull_*` lifecycle event, or,
 * on a terminal, one line redrawn in place while the pull runs.
 */
import type { LifecycleEvent } from "../client.js";

const WIDTH = 24;

function mib(n: number): string {
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** `[#########---------------]  1/2 layers  38.8/40.7 MiB` */
export function progressBar(p: { layers_done: number; layers_total: number; bytes_done: number; bytes_total: number }) {
  const ratio =
    p.bytes_total > 0 ? p.bytes_done / p.bytes_total : p.layers_total > 0 ? p.layers_done / p.layers_total : 0;
  const filled = Math.max(0, Math.min(WIDTH, Math.round(ratio * WIDTH)));
  return `[${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}] ${p.layers_done}/${p.layers_total} layers  ${mib(p.bytes_done)}/${mib(p.bytes_total)}`;
}

/**
 * The text for a pull event (`undefined` for other events): started (image and digest), progress (the bar: from the
 * view's `pull`, which carries the totals), completed, failed, cancelled.
 */
export function pullStepText(e: LifecycleEvent): string | undefined {
  const d = (e.data ?? {}) as Record<string, unknown>;
  switch (e.type) {
    case "oci_pull_started_v1":
      return `⇣ pulling ${d.image} (${d.layers} layers, ${mib(Number(d.bytes ?? 0))})`;
    case "oci_pull_progressed_v1":
      return e.view?.pull ? `⇣ ${progressBar(e.view.pull)}` : undefined;
    case "oci_pull_completed_v1":
      return `✓ image pulled (${d.digest})`;
    case "oci_pull_cancelled_v1":
      return "✗ pull cancelled";
    default:
      return undefined;
  }
}

/** Writes pull lines to stderr; on a TTY the progress lines replace each other. */
export function pullPrinter(write: (text: string) => void, tty = Boolean(process.stderr.isTTY)) {
  let inPlace = false;
  return (e: LifecycleEvent, elapsed: string): boolean => {
    const text = pullStepText(e);
    if (text === undefined) {
      if (inPlace) process.stderr.write("\n");
      inPlace = false;
      return false;
    }
    if (tty && e.type === "oci_pull_progressed_v1") {
      process.stderr.write(`\r\x1b[2K  ${text} ${elapsed}`);
      inPlace = true;
      return true;
    }
    if (inPlace) process.stderr.write("\n");
    inPlace = false;
    write(`  ${text} ${elapsed}`);
    return true;
  };
}
