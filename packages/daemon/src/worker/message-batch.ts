/**
 * Coalesces the messages one side of a plugin's MessagePort posts within one event-loop turn into ONE postMessage
 * of an array, flushed from setImmediate (after the poll phase that produced them). Under load a turn carries many
 * requests/replies, and each postMessage costs a structured-clone envelope, a cross-thread wake-up and a `message`
 * event on the other side: batching measured a clear throughput gain on the plugin-route bench. Order is kept.
 */
export class MessageBatcher<T> {
  private msgs: T[] = [];
  private transfer: ArrayBuffer[] = [];
  private scheduled = false;

  constructor(private readonly send: (msgs: T[], transfer: ArrayBuffer[]) => void) {}

  post(msg: T, transfer?: readonly ArrayBuffer[]): void {
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
    if (this.msgs.length === 0) return;
    const msgs = this.msgs;
    const transfer = this.transfer;
    this.msgs = [];
    this.transfer = [];
    this.send(msgs, transfer);
  };
}

/** Calls `each` for every message of a batch (or for a lone message). */
export function unbatch<T>(data: T | T[], each: (msg: T) => void): void {
  if (Array.isArray(data)) for (const m of data) each(m);
  else each(data);
}
