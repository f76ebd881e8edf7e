/** Shared setup of the container tests: a real Podman service, a temp HECATE_HOME, a router + HTTP server. */
import { execFileSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type PluginManifest, pluginPaths } from "@hecate/sdk";
import { request } from "undici";
import {
  type ContainerEvent,
  type ContainerPluginSpec,
  ContainerPlugins,
  LABEL_INSTANCE,
  PodmanClient,
} from "../../src/container/index.js";
import { Router } from "../../src/http/router.js";
import { createHttpServer, listen } from "../../src/http/server.js";

export const repoRoot = new URL("../../../../../", import.meta.url).pathname;
export const echoExample = join(repoRoot, "examples/container-echo");

/** Null when podman can run containers here; otherwise the reason (printed loudly, tests skipped). */
export function podmanUnavailable(): string | null {
  if (process.getuid?.() !== 0) return "container tests need root (rootful podman enforces limits)";
  try {
    execFileSync("podman", ["--version"], { stdio: "pipe" });
  } catch {
    return "podman is not installed (scripts/setup-system.sh installs it)";
  }
  return null;
}

export function skipReason(): string | false {
  const r = podmanUnavailable();
  // CI installs Podman (.ci/run): there a missing or broken Podman fails these tests instead of skipping them.
  if (r && process.env.CI) return false;
  if (r) {
    console.error(`\n!!!!!!!! SKIPPING CONTAINER TESTS: ${r} !!!!!!!!\n`);
    return r;
  }
  return false;
}

export interface Env {
  home: string;
  podman: PodmanClient;
  router: Router;
  server: Server;
  base: string;
  events: ContainerEvent[];
  containers: ContainerPlugins;
  newContainers(opts?: Partial<ConstructorParameters<typeof ContainerPlugins>[0]>): ContainerPlugins;
  close(): Promise<void>;
}

export async function setup(opts: Partial<ConstructorParameters<typeof ContainerPlugins>[0]> = {}): Promise<Env> {
  const home = mkdtempSync(join(tmpdir(), "hct-"));
  chmodSync(home, 0o755);
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  await podman.ensureService();
  const router = new Router();
  const server = createHttpServer(router);
  const port = await listen(server, 0);
  const events: ContainerEvent[] = [];
  const all: ContainerPlugins[] = [];
  const newContainers = (o: Partial<ConstructorParameters<typeof ContainerPlugins>[0]> = {}) => {
    const r = new ContainerPlugins({ home, podman, router, onEvent: (e) => events.push(e), ...opts, ...o });
    all.push(r);
    return r;
  };
  const containers = newContainers();
  try {
    await containers.ensureBaseImage();
  } catch (err) {
    await podman.stopService();
    await podman.close();
    server.close();
    throw err;
  }
  return {
    home,
    podman,
    router,
    server,
    base: `http://127.0.0.1:${port}`,
    events,
    containers,
    newContainers,
    async close() {
      for (const r of all) await r.close().catch(() => {});
      // Belt and braces: nothing of this home may survive the test.
      for (const r of all)
        for (const c of await podman.listContainers(`hecate.instance=${r.instanceId}`).catch(() => []))
          await podman.removeContainer(c.Id).catch(() => {});
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      await podman.stopService();
      await podman.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/**
 * Installs a copy of an example plugin dir as the package of `plugins/{name}` (`plugins/{name}/package`, the layout
 * of pluginPaths), world-readable: the container uid reads it. Returns the spec with `dir` = the plugin root.
 */
export function installPlugin(
  home: string,
  name: string,
  from = echoExample,
  patch: (m: PluginManifest) => void = () => {},
): ContainerPluginSpec {
  const dir = join(home, "plugins", name);
  const pkg = pluginPaths(home, name).package;
  mkdirSync(pkg, { recursive: true });
  cpSync(from, pkg, { recursive: true });
  execFileSync("chmod", ["-R", "a+rX", join(home, "plugins")]);
  const manifest = JSON.parse(readFileSync(join(pkg, "manifest.json"), "utf8")) as PluginManifest;
  manifest.name = name;
  patch(manifest);
  return { name, dir, manifest };
}

/**
 * A state-changing request to a plugin route as a same-origin JSON client sends it (JSON body and content type, no
 * Origin), so CSRF rules on plugin routes never get in the way of what a test checks.
 */
export async function postJson<T = Record<string, unknown>>(
  url: string,
): Promise<{ status: number; text: string; json: T }> {
  const r = await request(url, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  const text = await r.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.statusCode, text, json: json as T };
}

/**
 * Teardown for a test that ran a daemon on `home`: removes every container of that home's instance (if a daemon ever
 * started one) and stops the Podman API service on the home's socket.
 */
export async function removeHomeContainers(home: string): Promise<void> {
  const podman = new PodmanClient({ socketPath: join(home, "run", "podman.sock") });
  try {
    await podman.ensureService();
    const id = readFileSync(join(home, "instance-id"), "utf8").trim();
    for (const c of await podman.listContainers(`${LABEL_INSTANCE}=${id}`)) await podman.removeContainer(c.Id);
  } catch {
    // nothing was started
  } finally {
    await podman.stopService();
    await podman.close();
  }
}
