/**
 * A real OCI registry for the registry-install tests: Debian's `docker-registry` (distribution 2.8) on 127.0.0.1 with
 * a temp storage dir (optionally htpasswd auth, bcrypt made with bcryptjs), plugin images built with podman FROM the
 * local Node base image and pushed, and a TCP proxy that drips the registry's bytes (a slow pull on loopback).
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect, createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import bcrypt from "bcryptjs";
import { ensureNodeBaseImage, nodeBaseImageRef, PodmanClient } from "../../src/container/index.js";
import { type Daemon, startDaemon } from "../../src/daemon.js";

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string;
  port: number;
  stop(): Promise<void>;
}

async function waitForHttp(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/v2/`);
      await r.arrayBuffer();
      if (r.status === 200 || r.status === 401) return;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`registry on ${port} did not answer within ${timeoutMs} ms`);
}

/** A free loopback port (bound, then released). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function startRegistry(auth?: { username: string; password: string }): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), "hct-reg-"));
  const port = await freePort();
  const lines = [
    "version: 0.1",
    "log: { level: error }",
    "storage:",
    `  filesystem: { rootdirectory: ${join(dir, "data")} }`,
    "  delete: { enabled: true }",
    "http:",
    `  addr: 127.0.0.1:${port}`,
  ];
  if (auth) {
    const htpasswd = join(dir, "htpasswd");
    writeFileSync(htpasswd, `${auth.username}:${bcrypt.hashSync(auth.password, 5)}\n`);
    lines.push("auth:", `  htpasswd: { realm: hecate-test, path: ${htpasswd} }`);
  }
  mkdirSync(join(dir, "data"));
  writeFileSync(join(dir, "config.yml"), `${lines.join("\n")}\n`);
  const child: ChildProcess = spawn("docker-registry", ["serve", join(dir, "config.yml")], { stdio: "ignore" });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    await waitForHttp(port);
  } catch (err) {
    child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The local Node base image the test images are built FROM (built from the host's node when missing, CLI only). */
export async function ensureBaseImage(): Promise<void> {
  if (localImageExists(nodeBaseImageRef())) return;
  const dir = mkdtempSync(join(tmpdir(), "hct-base-"));
  const podman = new PodmanClient({ socketPath: join(dir, "podman.sock") });
  try {
    await podman.ensureService();
    await ensureNodeBaseImage(podman);
  } finally {
    await podman.stopService();
    await podman.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The plugin manifest an image carries (label io.hecate.manifest). */
export function imageManifest(name: string, version: string, extra: Record<string, unknown> = {}) {
  return {
    name,
    version,
    plugin_type: "container",
    container: { command: [process.execPath, "/app/index.mjs"], health_path: "/__health", memory_mb: 96, ...extra },
  };
}

/** A tiny plugin server (plain node:http on the plugin socket): every path answers {hello, version}. */
const SERVER = (version: string) => `
import { createServer } from "node:http";
import { rmSync } from "node:fs";
const sock = "/run/plugin/plugin.sock";
rmSync(sock, { force: true });
createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  res.end(JSON.stringify({ hello: "from an image", version: ${JSON.stringify(version)}, path: req.url }));
}).listen(sock);
process.on("SIGTERM", () => process.exit(0));
`;

/**
 * Builds `ref` FROM the local Node base image with the plugin server and `label` (null: no label), pushes it to its
 * registry over plain HTTP, then removes it locally (so a pull really downloads its own layers). `padMb` adds a layer
 * of that many MiB of random bytes (incompressible: a slow pull through the drip proxy). Returns the pushed digest.
 */
export async function buildAndPush(
  ref: string,
  version: string,
  label: unknown | null,
  opts: { padMb?: number; creds?: { username: string; password: string } } = {},
): Promise<string> {
  const run = promisify(execFile);
  const dir = mkdtempSync(join(tmpdir(), "hct-img-"));
  try {
    writeFileSync(join(dir, "index.mjs"), SERVER(version));
    const lines = [`FROM ${nodeBaseImageRef()}`, "COPY index.mjs /app/index.mjs"];
    if (opts.padMb) {
      await run("sh", ["-c", `head -c ${opts.padMb * 1024 * 1024} /dev/urandom > ${join(dir, "pad.bin")}`]);
      lines.push("COPY pad.bin /app/pad.bin");
    }
    writeFileSync(join(dir, "Containerfile"), `${lines.join("\n")}\n`);
    // --no-cache: buildah reuses a cached layer of another test file's build of the same files, labels included
    // (an unlabelled image came out carrying another plugin's io.hecate.manifest when the registry tests ran in parallel).
    const args = ["build", "-q", "--no-cache", "-t", ref, "-f", join(dir, "Containerfile")];
    if (label !== null) args.push("--label", `io.hecate.manifest=${JSON.stringify(label)}`);
    await run("podman", [...args, dir]);
    const digestFile = join(dir, "digest");
    const push = ["push", "-q", "--tls-verify=false", "--digestfile", digestFile];
    if (opts.creds) push.push("--creds", `${opts.creds.username}:${opts.creds.password}`);
    await run("podman", [...push, ref]);
    const digest = readFileSync(digestFile, "utf8").trim();
    await run("podman", ["rmi", "-f", ref]);
    return digest;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `podman images` fails when an image it is listing is removed meanwhile (another test file removing its own images
 * at the same moment): list again.
 */
function listImages(): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync("podman", ["images", "--format", "{{.ID}} {{.Repository}}"], { encoding: "utf8" });
    } catch (err) {
      if (attempt >= 5) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200 * attempt);
    }
  }
}

/** Removes every local image of a registry host (`podman rmi` of what `podman images` lists for it). */
export function removeLocalImages(host: string): void {
  // `--filter reference=` misses images pulled by digest (no tag): match the repository instead.
  const ids = listImages()
    .split("\n")
    .filter((l) => l.split(" ")[1]?.startsWith(`${host}/`))
    .map((l) => l.split(" ")[0]);
  if (ids.length) execFileSync("podman", ["rmi", "-f", ...new Set(ids)], { stdio: "ignore" });
}

export function localImageExists(ref: string): boolean {
  try {
    execFileSync("podman", ["image", "exists", ref], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface DripProxy {
  port: number;
  /** Bytes relayed from the registry to clients so far. */
  relayed(): number;
  /** Bytes per second from now on (0: unthrottled). */
  setRate(bytesPerSecond: number): void;
  close(): Promise<void>;
}

/**
 * A TCP proxy to `targetPort` that relays the registry's answers at `bytesPerSecond` (in 16 KiB steps): small
 * answers (manifests, config) pass at once, a large layer takes seconds.
 */
export async function startDripProxy(targetPort: number, bytesPerSecond: number): Promise<DripProxy> {
  let rate = bytesPerSecond;
  let relayed = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    client.pipe(upstream);
    const queue: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const pump = () => {
      timer = undefined;
      while (queue.length) {
        const chunk = queue[0];
        const step = rate > 0 ? Math.min(chunk.length, 16 * 1024) : chunk.length;
        client.write(chunk.subarray(0, step));
        relayed += step;
        if (step === chunk.length) queue.shift();
        else queue[0] = chunk.subarray(step);
        if (rate > 0) {
          timer = setTimeout(pump, (step / rate) * 1000);
          return;
        }
      }
      upstream.resume();
    };
    upstream.on("data", (c: Buffer) => {
      queue.push(c);
      if (queue.length > 4) upstream.pause();
      if (!timer) pump();
    });
    const end = () => {
      if (timer) clearTimeout(timer);
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    // The registry closed its side: once the queue is written, end the client's side gracefully. (end(), not
    // destroy(): destroy drops what the socket still buffers, which cut a blob short, "unexpected EOF", in CI.)
    upstream.on("end", () => {
      const flush = () => (queue.length ? setTimeout(flush, 20) : client.end());
      flush();
    });
    upstream.on("error", end);
    client.on("error", end);
    client.on("close", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as { port: number }).port,
    relayed: () => relayed,
    setRate: (r: number) => {
      rate = r;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export interface SseFollower {
  /** Lifecycle events received so far (parsed `lifecycle` SSE messages). */
  events: { plugin: string; type: string; position: number; data: Record<string, unknown> }[];
  /** Every byte received (to check what never appears). */
  text(): string;
  close(): void;
}

/** Follows the daemon's `/admin/api/events` over its Unix socket. */
export function followEvents(socketPath: string): Promise<SseFollower> {
  return new Promise((resolve, reject) => {
    let raw = "";
    let buf = "";
    const f: SseFollower = { events: [], text: () => raw, close: () => req.destroy() };
    const req = httpRequest({ socketPath, path: "/admin/api/events", headers: { host: "localhost" } }, (res) => {
      res.on("data", (b: Buffer) => {
        raw += b.toString("utf8");
        buf += b.toString("utf8");
        for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event === "lifecycle" && data) f.events.push(JSON.parse(data));
        }
      });
      res.on("error", () => {});
      resolve(f);
    });
    req.on("error", reject);
    req.end();
  });
}

/** An in-process daemon on `home` with container plugins on (the tests' own process is trusted on its socket). */
export function startContainerDaemon(home: string): Promise<Daemon> {
  return startDaemon({ home, port: 0, logLevel: "silent", containers: true, trustOwnProcessOnSocket: true });
}
