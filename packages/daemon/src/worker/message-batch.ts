/**
 * Coalesces the messages one side of a plugin's MessagePort posts within one event-loop turn into ONE postMessage
 * of an array, flushed from setImmediate (after the poll phase that produced them). Under load a turn carries many
 * requests/replies, and each postMessage costs a structured-clone envelope, a cross-thread wake-up and a `message`
 * event on the other side: batching measured a clear throughput gain on the plugin-route bench. Order is kept.
 *
 * A batch is also sent early, at the next post, once it has been open for `maxOpenMs`: in a turn of heavy handlers
 * (16 list queries of ~150 µs each) every reply would otherwise wait for the last one, and the thread on the other
 * side (and the clients behind it) would sit idle instead of working in parallel. Each early send costs the sending
 * thread one more postMessage, so the bound is per side: replies (the worker's time is its plugin's handlers) are
 * bounded at 20 µs, requests at 200 µs (the main thread parses HTTP for every plugin: a tighter bound there measured
 * -24 % req/s on a trivial route). Switching the bounds between alternating rounds against one daemon measured the
 * taskboard's task listing at +12..22 % req/s and a trivial route within noise (-3..+5 %).
 */
export class MessageBatcher<T> {
  private msgs: T[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;
  /** When the batch now queued got its first message. */
  private openedAt = 0;

  /** `maxOpenMs`: how long a batch stays open for more messages before the next post sends it. */
  constructor(
    private readonly send: (msgs: T[], transfer: ArrayBuffer[]) => void,
    private readonly maxOpenMs: number,
  ) {}

  post(msg: T, transfer?: readonly ArrayBuffer[]): void {
    const now = performance.now();
    if (this.msgs.length === 0) this.openedAt = now;
    else if (now - this.openedAt > this.maxOpenMs) {
      // Sent now; the setImmediate already scheduled sends what follows.
      this.sendQueued();
      this.openedAt = now;
    }
    this.msgs.push(msg);
    if (transfer) for (const b of transfer) this.transfer.push(b);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Sends what is queued now (also called before the thread goes away). */
  readonly flush = (): void => {
    this.scheduled = false;
    if (this.msgs.length > 0) this.sendQueued();
  };

  private sendQueued(): void {
    const msgs = this.msgs;
    const transfer = this.transfer;
    this.msgs = [];
    this.transfer = [];
    this.send(msgs, transfer);
  }
}

/** Calls `each` for every message of a batch (or for a lone message). */
export function unbatch<T>(data: T | T[], each: (msg: T) => void): void {
  if (Array.isArray(data)) for (const m of data) each(m);
  else each(data);
}
