/**
 * Installing a plugin package: validate the archive without writing, extract it in a worker thread into a staging
 * dir beside the target, verify, rename into place; and the boot-time cleanup of interrupted installs.
 */
import { randomBytes } from "node:crypto";
import { existsSync, renameSync } from "node:fs";
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import type { PluginManifest } from "@hecate/sdk/contract";
import { PackageError } from "./errors.js";
import { exchangePaths } from "./exchange.js";
import type { ExtractJob, ExtractReply } from "./extract-worker.js";
import { type TrustPolicy, verifyPackageDir } from "./integrity.js";
import { parseManifest } from "./manifest.js";
import { DEFAULT_LIMITS, type ExtractLimits, manifestSink, type ScanStats, scanArchive } from "./scan.js";

export { checkEntryName, DEFAULT_LIMITS, type ExtractLimits, MAX_MANIFEST_BYTES, type ScanStats } from "./scan.js";

/** An extraction worker that has not finished by then is terminated (the archive is refused as too large). */
export const EXTRACT_TIMEOUT_MS = 10 * 60 * 1000;

/**
 * Runs the writing pass in a worker thread and resolves only once the worker has exited, so nothing can still be
 * writing into the staging dir when the caller removes it.
 */
function extractInWorker(
  job: ExtractJob,
  timeoutMs: number,
): Promise<{ stats: ScanStats; digests: Record<string, string> }> {
  return new Promise((resolvePromise, reject) => {
    const worker = new Worker(new URL("./extract-worker.js", import.meta.url), {
      workerData: job,
      // The parser keeps at most one block, one pax record and one manifest in memory; this is a generous ceiling.
      resourceLimits: { maxOldGenerationSizeMb: 128 },
    });
    let reply: ExtractReply | undefined;
    let failure: Error | undefined;
    const timer = setTimeout(() => {
      failure = new PackageError("extract_timeout", `extraction did not finish within ${timeoutMs} ms`);
      void worker.terminate();
    }, timeoutMs);
    worker.on("message", (m: ExtractReply) => {
      reply = m;
    });
    worker.on("error", (err) => {
      failure ??= err;
    });
    worker.on("exit", (exitCode) => {
      clearTimeout(timer);
      if (reply?.ok) return resolvePromise({ stats: reply.stats, digests: reply.digests });
      if (reply?.code) return reject(new PackageError(reply.code, reply.message, reply.details));
      if (reply) return reject(Object.assign(new Error(reply.message), { code: reply.errno }));
      reject(failure ?? new Error(`extraction worker exited with code ${exitCode}`));
    });
  });
}

function withDefaults(limits?: Partial<ExtractLimits>): ExtractLimits {
  return { ...DEFAULT_LIMITS, ...limits };
}

/** Reads and validates manifest.json straight from the archive (bounded, nothing written); the whole archive is checked. */
export async function readArchiveManifest(
  archivePath: string,
  limits?: Partial<ExtractLimits>,
  opts: { hecateVersion?: string } = {},
): Promise<PluginManifest> {
  const sink = manifestSink();
  await scanArchive(archivePath, withDefaults(limits), sink);
  const bytes = sink.manifest();
  if (!bytes) throw new PackageError("missing_manifest", "manifest.json is missing from the package root");
  return parseManifest(bytes, opts);
}

async function isRegularFile(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isFile();
  } catch {
    return false;
  }
}

/** The code the manifest points at must be in the package: the callback module, or a container's image archive. */
async function checkCode(dir: string, manifest: PluginManifest): Promise<void> {
  if (manifest.plugin_type === "container") {
    const archive = manifest.container?.image_archive;
    if (archive && !(await isRegularFile(join(dir, archive))))
      throw new PackageError("missing_code", `container image archive ${archive} is missing from the package`, {
        file: archive,
      });
    return;
  }
  const module = manifest.callback_module ?? "dist/index.js";
  if (!(await isRegularFile(join(dir, module))))
    throw new PackageError("missing_code", `callback module ${module} is missing from the package`, { file: module });
}

/**
 * A package never carries its own `@hecate/sdk` (at any depth of its node_modules): Node would resolve that copy
 * before the daemon's (worker/sdk-link.ts; a container's mounted one), a second SDK instance that never sees the
 * config the host sets. `hecate plugin pack` leaves it out.
 */
function checkNoSdkCopy(files: Iterable<string>): void {
  for (const file of files) {
    const m = /(?:^|\/)node_modules\/@hecate\/sdk\//.exec(file);
    if (!m) continue;
    const dir = file.slice(0, m.index + m[0].length - 1).replace(/^\//, "");
    throw new PackageError(
      "sdk_shipped",
      `the package ships its own @hecate/sdk (${dir}); plugins always use the daemon's SDK: pack it with \`hecate plugin pack\`, which leaves it out`,
      { file },
    );
  }
}

async function readStagedManifest(dir: string, hecateVersion?: string): Promise<PluginManifest> {
  const path = join(dir, "manifest.json");
  if (!(await isRegularFile(path)))
    throw new PackageError("missing_manifest", "manifest.json is missing from the package root");
  return parseManifest(await readFile(path), { hecateVersion });
}

function checkName(manifest: PluginManifest, options: ExtractOptions): void {
  if (options.expectedName !== undefined && manifest.name !== options.expectedName)
    throw new PackageError(
      "name_mismatch",
      `package is plugin ${JSON.stringify(manifest.name)}, expected ${JSON.stringify(options.expectedName)}`,
      { field: "/name", expected: options.expectedName, actual: manifest.name },
    );
}

const suffix = () => randomBytes(6).toString("hex");

/**
 * Moves `staging` to `target`. An existing target is exchanged with the staging dir in one syscall (exchange.ts: a
 * plugin host serving the running version's static files never sees the package dir missing), then removed.
 */
export async function swapInto(staging: string, target: string): Promise<void> {
  if (existsSync(target) && (await exchangePaths(staging, target))) {
    await rm(staging, { recursive: true, force: true }).catch(() => {}); // now the old package; boot sweeps leftovers
    return;
  }
  const old = join(dirname(target), `.old-${basename(target)}-${suffix()}`);
  let movedOld = false;
  // Where the exchange is not available: both renames synchronous, back to back, so the package dir is missing for
  // microseconds only.
  try {
    renameSync(target, old);
    movedOld = true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  try {
    renameSync(staging, target);
  } catch (err) {
    if (movedOld) renameSync(old, target);
    throw err;
  }
  // The new package is in place; a failure to delete the old one is cleaned up by recoverPackageDir at boot.
  if (movedOld) await rm(old, { recursive: true, force: true }).catch(() => {});
}

export interface ExtractOptions {
  limits?: Partial<ExtractLimits>;
  /** Signature policy; default: signatures optional, no trusted keys. Digests are always required. */
  trust?: TrustPolicy;
  /** Refuse (name_mismatch) a package whose manifest names another plugin. */
  expectedName?: string;
  /** Checked against the manifest's `engines.hecate` (engine_mismatch). */
  hecateVersion?: string;
  /** The writing pass is terminated after this long (extract_timeout); default 10 minutes. */
  timeoutMs?: number;
}

export interface ExtractResult {
  manifest: PluginManifest;
  files: number;
  bytes: number;
}

/**
 * Reads the whole archive once without writing (every entry check, manifest, expected name, engine), then extracts
 * it into a fresh staging dir beside `targetDir` (checking every entry again), verifies it (manifest valid, code present, digests and
 * signature per policy), then renames it to `targetDir`. An existing `targetDir` is replaced: moved to `.old-*`,
 * the new one renamed in, the old one removed. On any failure the staging dir is removed, `targetDir` is untouched,
 * and a PackageError is thrown.
 */
export async function extractPackage(
  archivePath: string,
  targetDir: string,
  options: ExtractOptions = {},
): Promise<ExtractResult> {
  const limits = withDefaults(options.limits);
  const target = resolve(targetDir);
  const parent = dirname(target);
  // Pass 1 writes nothing: a hostile archive (or a package for another plugin) never touches the disk. It costs a
  // second gunzip of valid packages, which is cheap next to creating their files.
  checkName(await readArchiveManifest(archivePath, limits, { hecateVersion: options.hecateVersion }), options);
  await mkdir(parent, { recursive: true });
  const staging = await mkdtemp(join(parent, `.staging-${basename(target)}-`));
  try {
    // Pass 2 repeats every check while writing (the archive is not trusted to be the same bytes twice), in a worker.
    const { stats, digests } = await extractInWorker(
      { archivePath, limits, staging },
      options.timeoutMs ?? EXTRACT_TIMEOUT_MS,
    );
    const manifest = await readStagedManifest(staging, options.hecateVersion);
    checkName(manifest, options);
    await checkCode(staging, manifest);
    checkNoSdkCopy(Object.keys(digests));
    // Digests taken while writing; the staging dir holds nothing else (only we have written into it).
    await verifyPackageDir(staging, options.trust ?? { requireSignature: false, trustedKeys: [] }, digests);
    // mkdtemp creates 0700; the package dir is read by container plugins running as another uid.
    await chmod(staging, 0o755);
    await swapInto(staging, target);
    return { manifest, files: stats.files, bytes: stats.bytes };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Boot cleanup under a plugin root: removes leftover `.staging-*` dirs; a `.old-X-*` dir is renamed back to `X` when
 * `X` is missing (crash between the two renames of a replace), otherwise removed.
 */
export async function recoverPackageDir(pluginRoot: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(pluginRoot);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  for (const name of names.sort()) {
    const path = join(pluginRoot, name);
    if (name.startsWith(".staging-")) {
      await rm(path, { recursive: true, force: true });
      continue;
    }
    const old = /^\.old-(.+)-[0-9a-f]{12}$/.exec(name);
    if (!old) continue;
    const target = join(pluginRoot, old[1]!);
    const targetExists = await lstat(target).then(
      () => true,
      () => false,
    );
    if (targetExists) await rm(path, { recursive: true, force: true });
    else await rename(path, target);
  }
}
