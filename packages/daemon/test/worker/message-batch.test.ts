import assert from "node:assert/strict";
import { test } from "node:test";
import { setImmediate as immediate } from "node:timers/promises";
import { MessageBatcher, unbatch } from "../../src/worker/message-batch.js";

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test("messages posted in one burst go out in a few batches, in order", async () => {
  const sent: number[][] = [];
  const batch = new MessageBatcher<number>((msgs) => sent.push(msgs), 0.02);
  const burst = () => {
    for (let i = 0; i < 1000; i++) batch.post(i);
  };
  burst(); // warm-up: the first calls run in the interpreter, slowly enough to pass the bound now and then
  await immediate();
  sent.length = 0;
  burst();
  await immediate();
  assert.deepEqual(
    sent.flat(),
    Array.from({ length: 1000 }, (_, i) => i),
    "all of them, in order",
  );
  // Split only where the burst has run for the bound (20 µs), so far fewer postMessages than messages.
  assert.ok(sent.length < 100, `batched: ${sent.length} postMessages for 1000 messages`);
});

test("a batch open longer than its bound is sent at the next post, without waiting for the turn to end", async () => {
  const sent: number[][] = [];
  const batch = new MessageBatcher<number>((msgs) => sent.push(msgs), 0.02);
  batch.post(1);
  batch.post(2);
  busy(2); // a heavy handler runs between two replies
  batch.post(3);
  assert.deepEqual(sent.flat(), [1, 2], "the replies before the heavy handler went out when the next was posted");
  busy(2);
  batch.post(4);
  assert.deepEqual(sent.flat(), [1, 2, 3]);
  await immediate();
  assert.deepEqual(sent.flat(), [1, 2, 3, 4], "the rest goes out after the turn, order kept");
  assert.deepEqual(sent.at(-1), [4]);
  batch.flush();
  assert.equal(sent.length, sent.filter((m) => m.length > 0).length, "no empty postMessage");
});

test("unbatch takes a batch or a lone message", () => {
  const seen: number[] = [];
  unbatch([1, 2], (m) => seen.push(m));
  unbatch(3, (m) => seen.push(m));
  assert.deepEqual(seen, [1, 2, 3]);
});
