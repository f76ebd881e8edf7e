/**
 * `hecate plugin pack|sign|verify` and `hecate keygen`. The package format, digests, signatures and the safe
 * extraction are the package-format library the daemon uses too (@hecate/package, packages/package): the CLI checks exactly what the
 * daemon will check at install.
 */
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  extractPackage,
  FILE_MANIFEST,
  FILE_SIGNATURE,
  generateSigningKeyPair,
  loadTrustedKeys,
  packPlugin,
  readArchiveManifest,
  type TrustPolicy,
  verifyPackageDir,
} from "@hecate/package";
import type { PluginManifest } from "@hecate/sdk";
import { CliError, EXIT } from "./errors.js";
import type { Output } from "./output.js";
import { type PackResult, packageFailure, packProject, readJson } from "./pack/project.js";

export { ESM_PACKAGE_JSON, type PackResult, packProject } from "./pack/project.js";

async function readKey(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new CliError("key_unreadable", `cannot read key ${file}: ${(err as Error).message}`, EXIT.USAGE, {
      field: "key",
    });
  }
}

function mib(bytes: number): string {
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

/** One line: the shipped dependencies, their total and the largest few (for the pack's report). */
export function dependencySummary(r: PackResult, largest = 5): string {
  if (r.dependencies.length === 0) return "no dependencies shipped (@hecate/sdk comes from the daemon)";
  const total = r.dependencies.reduce((n, d) => n + d.bytes, 0);
  const top = r.dependencies
    .slice(0, largest)
    .map((d) => `${d.name}@${d.version}${d.native ? " (native)" : ""} ${mib(d.bytes)}`);
  return `${r.dependencies.length} dependencies, ${mib(total)}; largest: ${top.join(", ")}`;
}

export async function packCommand(
  out: Output,
  dir: string,
  opts: { out?: string; key?: string; build?: boolean },
): Promise<void> {
  const key = opts.key ? await readKey(opts.key) : undefined;
  const r = await packProject(dir, opts.out, { privateKeyPem: key, build: opts.build });
  out.result(r, () => {
    if (r.build.command) out.line(`built with \`${r.build.command}\` (${(r.build.ms / 1000).toFixed(1)} s)`);
    out.line(`packed ${r.name}@${r.version}${r.signed ? " (signed)" : ""}: ${r.file} (${r.bytes} bytes)`);
    out.line(`  size: ${mib(r.bytes)} compressed, ${mib(r.unpackedBytes)} in ${r.files} files`);
    out.line(`  dependencies: ${dependencySummary(r)}`);
    out.line(`  contents: ${r.entries.join(", ")}, ${FILE_MANIFEST}${r.signed ? `, ${FILE_SIGNATURE}` : ""}`);
  });
  for (const w of r.warnings) out.progress(`warning: ${w}`);
}

/** Extracts and fully verifies an archive into a temp dir (the daemon's own install checks). */
async function extractVerified(archive: string, trust: TrustPolicy) {
  const work = await mkdtemp(join(tmpdir(), "hecate-verify-"));
  const dir = join(work, "package");
  try {
    const r = await extractPackage(resolve(archive), dir, { trust });
    return { work, dir, ...r };
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    packageFailure(err, `${archive} failed verification`);
  }
}

async function signatureKeyId(dir: string): Promise<string | null> {
  const sig = join(dir, FILE_SIGNATURE);
  if (!existsSync(sig)) return null;
  return ((await readJson(sig, FILE_SIGNATURE)) as { keyId?: string }).keyId ?? null;
}

export async function signCommand(out: Output, file: string, opts: { key: string; out?: string }): Promise<void> {
  const key = await readKey(opts.key);
  // a package is only signed after its digests check out (signing a tampered package would bless it)
  const { work, dir, manifest } = await extractVerified(file, { requireSignature: false, trustedKeys: [] });
  try {
    await rm(join(dir, FILE_SIGNATURE), { force: true });
    const target = resolve(opts.out ?? file);
    const tmp = `${target}.${process.pid}.tmp`;
    try {
      await packPlugin(dir, tmp, { privateKeyPem: key });
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      packageFailure(err, `cannot sign ${file}`);
    }
    const keyId = await signatureKeyId(dir);
    out.result({ name: manifest.name, version: manifest.version, file: target, keyId }, () =>
      out.line(`signed ${manifest.name}@${manifest.version} with key ${keyId}: ${target}`),
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export async function verifyCommand(
  out: Output,
  file: string,
  opts: { home: string; trustedKeys?: string; requireSignature?: boolean },
): Promise<void> {
  const trust = trustPolicyFor(opts);
  const { work, dir, manifest, files, bytes } = await extractVerified(file, trust);
  try {
    const keyId = await signatureKeyId(dir);
    // extractPackage checked everything; this second pass tells whether the signature was verified by a trusted key
    const trusted = (await verifyPackageDir(dir, trust)).signed;
    const result = {
      ok: true,
      name: manifest.name,
      version: manifest.version,
      files,
      bytes,
      signed: keyId !== null,
      keyId,
      trusted,
    };
    out.result(result, () => {
      out.line(`OK ${manifest.name}@${manifest.version}: ${files} files, ${bytes} bytes, all SHA-256 digests match`);
      out.line(
        keyId === null
          ? "  unsigned"
          : `  signed by key ${keyId}${trusted ? " (trusted)" : " (not in the trusted keys: signature not checked)"}`,
      );
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The daemon's trust policy (HECATE_HOME/trusted-keys), or one read from another keys dir. */
function trustPolicyFor(opts: { home: string; trustedKeys?: string; requireSignature?: boolean }): TrustPolicy {
  if (opts.trustedKeys && !existsSync(opts.trustedKeys)) {
    throw new CliError("trusted_keys_not_found", `trusted keys dir ${opts.trustedKeys} does not exist`, EXIT.USAGE, {
      field: "trusted-keys",
    });
  }
  return {
    requireSignature: Boolean(opts.requireSignature),
    trustedKeys: loadTrustedKeys(resolve(opts.trustedKeys ?? join(opts.home, "trusted-keys"))),
  };
}

export async function keygenCommand(
  out: Output,
  opts: { outDir: string; name: string; trust?: boolean; home: string },
): Promise<void> {
  const { publicKeyPem, privateKeyPem, keyId } = generateSigningKeyPair();
  const dir = resolve(opts.outDir);
  await mkdir(dir, { recursive: true });
  const privateFile = join(dir, `${opts.name}.key`);
  const publicFile = join(dir, `${opts.name}.pub`);
  if (existsSync(privateFile)) {
    throw new CliError("key_exists", `${privateFile} already exists (refusing to overwrite a key)`, EXIT.USAGE, {
      field: "name",
    });
  }
  await writeFile(privateFile, privateKeyPem, { mode: 0o600, flag: "wx" });
  await writeFile(publicFile, publicKeyPem, { mode: 0o644 });
  let trustedFile: string | undefined;
  if (opts.trust) {
    const keysDir = join(opts.home, "trusted-keys");
    await mkdir(keysDir, { recursive: true });
    trustedFile = join(keysDir, `${opts.name}-${keyId}.pub`);
    await writeFile(trustedFile, publicKeyPem);
    await chmod(trustedFile, 0o644);
  }
  out.result({ keyId, privateKey: privateFile, publicKey: publicFile, trustedKey: trustedFile ?? null }, () => {
    out.line(`key ${keyId}`);
    out.line(`  private: ${privateFile} (keep it secret)`);
    out.line(`  public:  ${publicFile}`);
    out.line(
      trustedFile
        ? `  trusted by the daemon at ${opts.home}: ${trustedFile}`
        : `  to trust it: copy ${publicFile} into $HECATE_HOME/trusted-keys/`,
    );
  });
}

export interface PreparedArchive {
  file: string;
  name: string;
  version: string;
  description: string;
  cleanup(): Promise<void>;
}

/** A .tar.gz ready to upload: the file itself, or a project dir packed (and optionally signed) into a temp file. */
/** `build: false` packs a project dir as it is (its caller built it, as `plugin dev` does). */
export async function prepareArchive(
  source: string,
  opts: { signingKey?: string; build?: boolean },
): Promise<PreparedArchive> {
  const path = resolve(source);
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch {
    throw new CliError("source_not_found", `${source} does not exist`, EXIT.USAGE, { field: "source" });
  }
  const key = opts.signingKey ? await readKey(opts.signingKey) : undefined;
  if (info.isDirectory()) {
    const work = await mkdtemp(join(tmpdir(), "hecate-install-"));
    try {
      // built first (a stale build is never uploaded), packed with its dependencies
      const r = await packProject(path, join(work, "package.tar.gz"), { privateKeyPem: key, build: opts.build });
      const cleanup = () => rm(work, { recursive: true, force: true });
      const built = r.build.command ? `built with \`${r.build.command}\`, ` : "";
      const description = `${path} (${built}packed: ${mib(r.bytes)}, ${dependencySummary(r, 3)})`;
      return { file: r.file, name: r.name, version: r.version, description, cleanup };
    } catch (err) {
      await rm(work, { recursive: true, force: true });
      throw err;
    }
  }
  let manifest: PluginManifest;
  try {
    manifest = await readArchiveManifest(path);
  } catch (err) {
    packageFailure(err, `${source} is not a valid plugin package`);
  }
  if (key) {
    const work = await mkdtemp(join(tmpdir(), "hecate-install-"));
    const signed = join(work, "package.tar.gz");
    await cp(path, signed);
    await signCommand({ json: true, line() {}, progress() {}, result() {} }, signed, { key: opts.signingKey! });
    const cleanup = () => rm(work, { recursive: true, force: true });
    return { file: signed, name: manifest.name, version: manifest.version, description: `${path} (signed)`, cleanup };
  }
  return { file: path, name: manifest.name, version: manifest.version, description: path, cleanup: async () => {} };
}
