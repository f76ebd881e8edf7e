/**
 * A connection flooder, run as its own process (its own fd limit): opens `count` TCP connections to 127.0.0.1:`port`
 * from `localAddress` (any 127.x.y.z: several flooders look like several clients), sends nothing, keeps them.
 * Prints one JSON line {opened, closedByServer, open, ms} once every attempt has settled, then holds the
 * connections until its stdin ends (or `holdMs` passes), and exits.
 * Usage: node flood-client.js <port> <localAddress> <count> [holdMs]
 */
import { connect, type Socket } from "node:net";

const [port, localAddress, countArg, holdArg] = process.argv.slice(2);
const count = Number(countArg);
const holdMs = Number(holdArg ?? 60_000);
const sockets = new Set<Socket>();
let opened = 0;
let closedByServer = 0;
let failed = 0;
const t0 = performance.now();

function one(): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port: Number(port), localAddress });
    let connected = false;
    s.on("connect", () => {
      connected = true;
      opened++;
      sockets.add(s);
      resolve();
    });
    s.on("error", () => {}); // ECONNRESET from a refused connection: counted at close
    s.on("close", () => {
      sockets.delete(s);
      if (connected) closedByServer++;
      else {
        failed++;
        resolve();
      }
    });
  });
}

// 256 connects in flight per flooder (SYNs dropped while the accept queue is full are retried after 1 s: lanes hide it).
let next = 0;
await Promise.all(
  Array.from({ length: 256 }, async () => {
    while (next < count) {
      next++;
      await one();
    }
  }),
);
// The closes of refused connections arrive a little later: report once the count has been still for 600 ms.
for (let last = -1, still = 0; still < 3; ) {
  await new Promise((r) => setTimeout(r, 200));
  still = sockets.size === last ? still + 1 : 0;
  last = sockets.size;
}
process.stdout.write(
  `${JSON.stringify({ opened, closedByServer, failed, open: sockets.size, ms: Math.round(performance.now() - t0) })}\n`,
);
const done = () => {
  for (const s of sockets) s.destroy();
  process.exit(0);
};
process.stdin.on("end", done);
process.stdin.resume();
setTimeout(done, holdMs).unref();
