/**
 * `hecate plugin pack|sign|verify` and `hecate keygen`. The package format, digests, signatures and the safe
 * extraction are the daemon's own package module (packages/daemon/src/package/*): the CLI checks exactly what the
 * daemon will check at install.
 */
import { existsSync } from "node:fs";
import { chmod, cp, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { PackageError } from "@hecate/daemon/package/errors";
import { extractPackage, readArchiveManifest } from "@hecate/daemon/package/extract";
import {
  FILE_MANIFEST,
  FILE_SIGNATURE,
  generateSigningKeyPair,
  loadTrustedKeys,
  packPlugin,
  type TrustPolicy,
  verifyPackageDir,
} from "@hecate/daemon/package/integrity";
import { validateManifest } from "@hecate/daemon/package/manifest";
import type { PluginManifest } from "@hecate/sdk";
import { CliError, EXIT } from "./errors.js";
import type { Output } from "./output.js";

/** PackageError (the daemon's typed package failures) -> CliError with exit code "package rejected". */
function packageFailure(err: unknown, what: string): never {
  if (err instanceof PackageError) {
    throw new CliError(err.code, `${what}: ${err.message}`, EXIT.PACKAGE_REJECTED, err.details);
  }
  throw err;
}

async function readJson(file: string, what: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new CliError("missing_manifest", `${what} not found: ${file}`, EXIT.PACKAGE_REJECTED, { field: file });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError("invalid_json", `${file} is not valid JSON: ${(err as Error).message}`, EXIT.PACKAGE_REJECTED);
  }
}

/**
 * What goes into the package: manifest.json plus package.json "files" (npm's convention for "what gets published"),
 * or by default the callback module's top-level dir and priv/.
 */
async function packageEntries(projectDir: string, manifest: PluginManifest): Promise<string[]> {
  const pkgJson = join(projectDir, "package.json");
  let listed: string[] | undefined;
  if (existsSync(pkgJson)) {
    const files = (JSON.parse(await readFile(pkgJson, "utf8")) as { files?: unknown }).files;
    if (Array.isArray(files) && files.every((f) => typeof f === "string")) listed = files;
  }
  const entries = listed ?? [(manifest.callback_module ?? "dist/index.js").split("/")[0], "priv"];
  if (manifest.container?.image_archive) entries.push(manifest.container.image_archive);
  const out = new Set<string>(["manifest.json"]);
  for (const e of entries) {
    const rel = normalize(e).replace(/\/+$/, "");
    if (isAbsolute(rel) || rel.startsWith("..")) {
      throw new CliError("invalid_files", `package file ${JSON.stringify(e)} lies outside the project`, EXIT.USAGE, {
        field: "files",
      });
    }
    if (rel === "priv" && !listed && !existsSync(join(projectDir, rel))) continue;
    if (!existsSync(join(projectDir, rel))) {
      throw new CliError(
        "missing_file",
        `${rel} (listed for the package) does not exist in ${projectDir}`,
        EXIT.USAGE,
        {
          field: "files",
        },
      );
    }
    out.add(rel);
  }
  return [...out];
}

export interface PackResult {
  name: string;
  version: string;
  file: string;
  bytes: number;
  entries: string[];
  signed: boolean;
}

/** Written into a package that does not carry a package.json of its own. */
export const ESM_PACKAGE_JSON = `{"type":"module"}\n`;

/** Packs a plugin project into `outFile` (digests always; signature when `privateKeyPem` is given). */
export async function packProject(projectDir: string, outFile: string | undefined, privateKeyPem?: string) {
  const dir = resolve(projectDir);
  let manifest: PluginManifest;
  try {
    manifest = validateManifest(await readJson(join(dir, "manifest.json"), "manifest.json"));
  } catch (err) {
    packageFailure(err, `invalid manifest.json in ${dir}`);
  }
  const entries = await packageEntries(dir, manifest);
  const out = resolve(outFile ?? join(dir, `${manifest.name}-${manifest.version}.tar.gz`));
  const staging = await mkdtemp(join(tmpdir(), "hecate-pack-"));
  try {
    // staged copy: only the package's files, symlinks resolved (the format has no links)
    for (const e of entries) {
      await mkdir(dirname(join(staging, e)), { recursive: true });
      await cp(join(dir, e), join(staging, e), { recursive: true, dereference: true });
    }
    // Plugin code is ESM: without a package.json of its own, a package's `.js` files would load as whatever a
    // package.json above the daemon's $HECATE_HOME says. (The daemon also guarantees it for older packages.)
    if (!existsSync(join(staging, "package.json"))) {
      await writeFile(join(staging, "package.json"), ESM_PACKAGE_JSON, { mode: 0o644 });
      entries.push("package.json");
    }
    await mkdir(dirname(out), { recursive: true });
    const tmpOut = join(staging, "..", `${basename(staging)}.tar.gz`);
    try {
      await packPlugin(staging, tmpOut, { privateKeyPem });
      await rename(tmpOut, out);
    } finally {
      await rm(tmpOut, { force: true });
    }
  } catch (err) {
    packageFailure(err, `cannot pack ${dir}`);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  const result: PackResult = {
    name: manifest.name,
    version: manifest.version,
    file: out,
    bytes: (await stat(out)).size,
    entries,
    signed: Boolean(privateKeyPem),
  };
  return result;
}

async function readKey(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    throw new CliError("key_unreadable", `cannot read key ${file}: ${(err as Error).message}`, EXIT.USAGE, {
      field: "key",
    });
  }
}

export async function packCommand(out: Output, dir: string, opts: { out?: string; key?: string }): Promise<void> {
  const key = opts.key ? await readKey(opts.key) : undefined;
  const r = await packProject(dir, opts.out, key);
  out.result(r, () => {
    out.line(`packed ${r.name}@${r.version}${r.signed ? " (signed)" : ""}: ${r.file} (${r.bytes} bytes)`);
    out.line(`  contents: ${r.entries.join(", ")}, ${FILE_MANIFEST}${r.signed ? `, ${FILE_SIGNATURE}` : ""}`);
  });
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
export async function prepareArchive(source: string, opts: { signingKey?: string }): Promise<PreparedArchive> {
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
      const r = await packProject(path, join(work, "package.tar.gz"), key);
      const cleanup = () => rm(work, { recursive: true, force: true });
      return { file: r.file, name: r.name, version: r.version, description: `${path} (packed)`, cleanup };
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
