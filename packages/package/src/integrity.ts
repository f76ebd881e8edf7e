/**
 * Package integrity: a file manifest of SHA-256 digests (hecate-files.json) and an optional ed25519 signature over
 * its exact bytes (hecate-files.sig). Checked at install (before the package is renamed into place) and at every load.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
} from "node:crypto";
import { createReadStream, readdirSync, readFileSync } from "node:fs";
import { lstat, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join, resolve, sep } from "node:path";
import { create as tarCreate } from "tar";
import { PackageError, type PackageErrorCode } from "./errors.js";

export const FILE_MANIFEST = "hecate-files.json";
export const FILE_SIGNATURE = "hecate-files.sig";

export interface FileManifest {
  version: 1;
  algorithm: "sha256";
  /** POSIX path relative to the package root -> lower-case hex SHA-256. */
  files: Record<string, string>;
}

export interface FileSignature {
  /** First 16 hex chars of the SHA-256 of the raw 32-byte ed25519 public key. */
  keyId: string;
  /** base64 ed25519 signature over the exact bytes of hecate-files.json. */
  signature: string;
}

export interface TrustedKey {
  keyId: string;
  publicKeyPem: string;
}

export interface TrustPolicy {
  /** Refuse unsigned packages and packages signed by a key not in `trustedKeys`. */
  requireSignature: boolean;
  trustedKeys: TrustedKey[];
}

export interface VerifyResult {
  files: number;
  /** True when the signature was verified against a trusted key. */
  signed: boolean;
  keyId?: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
const HASH_CONCURRENCY = 8;

/** keyId of an ed25519 public key: hex SHA-256 of the raw key, first 16 chars. */
export function keyIdOf(key: KeyObject | string): string {
  const pub = typeof key === "string" ? createPublicKey(key) : key.type === "private" ? createPublicKey(key) : key;
  if (pub.asymmetricKeyType !== "ed25519") throw new Error(`not an ed25519 key (${pub.asymmetricKeyType})`);
  const raw = Buffer.from(pub.export({ format: "jwk" }).x as string, "base64url");
  return createHash("sha256").update(raw).digest("hex").slice(0, 16);
}

export function generateSigningKeyPair(): { publicKeyPem: string; privateKeyPem: string; keyId: string } {
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  return {
    publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
    privateKeyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
    keyId: keyIdOf(publicKey),
  };
}

function sha256File(path: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("data", (c) => hash.update(c))
      .on("error", reject)
      .on("end", () => resolvePromise(hash.digest("hex")));
  });
}

/** Every regular file and every directory under `dir` (POSIX relative paths, sorted); links and special files are refused. */
async function walkTree(dir: string): Promise<{ files: string[]; dirs: string[] }> {
  const out: string[] = [];
  const dirs: string[] = [];
  const walk = async (abs: string, rel: string) => {
    const entries = await readdir(abs, { withFileTypes: true });
    for (const e of entries) {
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      const childAbs = join(abs, e.name);
      if (e.isDirectory()) {
        dirs.push(childRel);
        await walk(childAbs, childRel);
      } else if (e.isFile()) out.push(childRel);
      else if (e.isSymbolicLink())
        throw new PackageError("link_entry", `symbolic link in the package: ${childRel}`, { file: childRel });
      else throw new PackageError("special_file", `special file in the package: ${childRel}`, { file: childRel });
    }
  };
  await walk(dir, "");
  return { files: out.sort(), dirs: dirs.sort() };
}

/** Every regular file under `dir` (POSIX relative paths, sorted); links and special files are refused. */
async function listFiles(dir: string): Promise<string[]> {
  return (await walkTree(dir)).files;
}

const isIntegrityFile = (rel: string) => rel === FILE_MANIFEST || rel === FILE_SIGNATURE;

/** SHA-256 of every file in `dir` except hecate-files.json and hecate-files.sig, keys sorted. */
export async function computeFileDigests(
  dir: string,
  /** The files of `dir` when already listed. */
  listed?: string[],
): Promise<Record<string, string>> {
  const files = (listed ?? (await listFiles(dir))).filter((f) => !isIntegrityFile(f));
  const digests: string[] = new Array(files.length);
  let next = 0;
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      digests[i] = await sha256File(join(dir, files[i]!));
    }
  };
  await Promise.all(Array.from({ length: Math.min(HASH_CONCURRENCY, files.length) }, worker));
  const out: Record<string, string> = {};
  files.forEach((f, i) => {
    out[f] = digests[i]!;
  });
  return out;
}

function serialise(m: FileManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/**
 * Writes hecate-files.json for `dir`. A signature that no longer matches (the digests changed) is removed, so
 * `writeFileManifest` -> `signFileManifest` -> `packPlugin` keeps the signature.
 */
export async function writeFileManifest(dir: string): Promise<FileManifest> {
  const manifest: FileManifest = { version: 1, algorithm: "sha256", files: await computeFileDigests(dir) };
  const text = serialise(manifest);
  const path = join(dir, FILE_MANIFEST);
  const previous = await readFile(path, "utf8").catch(() => undefined);
  if (previous !== text) {
    await writeFile(path, text, { mode: 0o644 });
    await rm(join(dir, FILE_SIGNATURE), { force: true });
  }
  return manifest;
}

/** Signs hecate-files.json of `dir` with an ed25519 private key (PEM), writing hecate-files.sig. */
export async function signFileManifest(dir: string, privateKeyPem: string): Promise<FileSignature> {
  const bytes = await readFile(join(dir, FILE_MANIFEST)).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") throw new PackageError("missing_digests", `${FILE_MANIFEST} is missing; pack first`);
    throw err;
  });
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== "ed25519") throw new Error(`signing key is ${key.asymmetricKeyType}, not ed25519`);
  const sig: FileSignature = { keyId: keyIdOf(key), signature: sign(null, bytes, key).toString("base64") };
  await writeFile(join(dir, FILE_SIGNATURE), `${JSON.stringify(sig)}\n`, { mode: 0o644 });
  return sig;
}

function parseFileManifest(bytes: Buffer): FileManifest {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new PackageError("digest_mismatch", `${FILE_MANIFEST} is not valid JSON`, { file: FILE_MANIFEST });
  }
  const m = value as Partial<FileManifest> | null;
  const ok =
    m !== null &&
    typeof m === "object" &&
    m.version === 1 &&
    m.algorithm === "sha256" &&
    typeof m.files === "object" &&
    m.files !== null &&
    Object.entries(m.files).every(
      ([k, v]) =>
        typeof v === "string" &&
        HEX64.test(v) &&
        k.length > 0 &&
        !k.startsWith("/") &&
        !k.includes("\\") &&
        !k.split("/").some((s) => s === ".." || s === "." || s === ""),
    );
  if (!ok)
    throw new PackageError(
      "digest_mismatch",
      `${FILE_MANIFEST} is malformed (expected {"version":1,"algorithm":"sha256","files":{path: sha256 hex}})`,
      { file: FILE_MANIFEST },
    );
  return m as FileManifest;
}

function checkSignature(sigBytes: Buffer | undefined, manifestBytes: Buffer, trust: TrustPolicy): VerifyResult {
  if (!sigBytes) {
    if (trust.requireSignature)
      throw new PackageError("unsigned", "package is not signed and this daemon requires signed packages");
    return { files: 0, signed: false };
  }
  let sig: Partial<FileSignature>;
  try {
    sig = JSON.parse(sigBytes.toString("utf8")) as Partial<FileSignature>;
  } catch {
    throw new PackageError("bad_signature", `${FILE_SIGNATURE} is not valid JSON`, { file: FILE_SIGNATURE });
  }
  if (typeof sig?.keyId !== "string" || typeof sig.signature !== "string")
    throw new PackageError("bad_signature", `${FILE_SIGNATURE} must be {"keyId","signature"}`, {
      file: FILE_SIGNATURE,
    });
  const key = trust.trustedKeys.find((k) => k.keyId === sig.keyId);
  if (!key) {
    if (trust.requireSignature)
      throw new PackageError("untrusted_key", `package is signed by key ${sig.keyId}, which is not trusted`, {
        keyId: sig.keyId,
      });
    return { files: 0, signed: false, keyId: sig.keyId };
  }
  const ok = verify(null, manifestBytes, createPublicKey(key.publicKeyPem), Buffer.from(sig.signature, "base64"));
  if (!ok)
    throw new PackageError("bad_signature", `signature by key ${sig.keyId} does not match ${FILE_MANIFEST}`, {
      keyId: sig.keyId,
    });
  return { files: 0, signed: true, keyId: sig.keyId };
}

/**
 * hecate-files.json / hecate-files.sig of `dir`: undefined when absent; a directory, link or special file in its
 * place is refused with `code` (a plain EISDIR from readFile used to escape as a non-PackageError).
 */
async function readIntegrityFile(dir: string, name: string, code: PackageErrorCode): Promise<Buffer | undefined> {
  const path = join(dir, name);
  const notAFile = (what: string) =>
    new PackageError(code, `${name} is ${what}, not a regular file`, { file: name, reason: "not_a_file" });
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT" || err.code === "ENOTDIR") return undefined;
    throw err;
  });
  if (!st) return undefined;
  if (st.isDirectory()) throw notAFile("a directory");
  if (st.isSymbolicLink()) throw notAFile("a symbolic link");
  if (!st.isFile()) throw notAFile("a special file");
  return readFile(path).catch((err: NodeJS.ErrnoException) => {
    // replaced between lstat and read
    if (err.code === "EISDIR") throw notAFile("a directory");
    throw err;
  });
}

/** Every parent directory of the listed files: the only directories a package may contain. */
function impliedDirs(files: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const f of files) {
    const parts = f.split("/");
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  return dirs;
}

/**
 * Verifies `dir` against its hecate-files.json (every listed file present with its digest, no unlisted file or
 * directory, no links) and the signature per `trust`. Throws PackageError (missing_digests, digest_mismatch with
 * `details.file`, unsigned, untrusted_key, bad_signature).
 */
export async function verifyPackageDir(
  dir: string,
  trust: TrustPolicy,
  /** Digests already computed for every file of `dir` (e.g. while extracting it); default: hash the files now. */
  knownDigests?: Record<string, string>,
): Promise<VerifyResult> {
  const manifestBytes = await readIntegrityFile(dir, FILE_MANIFEST, "missing_digests");
  if (!manifestBytes)
    throw new PackageError("missing_digests", `${FILE_MANIFEST} is missing: packages must be built with hecate pack`);
  const sigBytes = await readIntegrityFile(dir, FILE_SIGNATURE, "bad_signature");
  const declared = parseFileManifest(manifestBytes);
  const result = checkSignature(sigBytes, manifestBytes, trust);
  let actual: Record<string, string>;
  let dirs: string[];
  try {
    const tree = await walkTree(dir);
    dirs = tree.dirs;
    actual = knownDigests
      ? Object.fromEntries(Object.entries(knownDigests).filter(([f]) => !isIntegrityFile(f)))
      : await computeFileDigests(dir, tree.files);
  } catch (err) {
    // A link or special file appearing after install is tampering as far as the loader is concerned.
    if (err instanceof PackageError)
      throw new PackageError("digest_mismatch", err.message, { ...(err.details as object), reason: err.code });
    throw err;
  }
  for (const [file, digest] of Object.entries(declared.files)) {
    const got = actual[file];
    if (got === undefined)
      throw new PackageError("digest_mismatch", `${file} is listed in ${FILE_MANIFEST} but missing`, {
        file,
        reason: "missing",
      });
    if (got !== digest)
      throw new PackageError("digest_mismatch", `${file} does not match its SHA-256 digest`, {
        file,
        reason: "modified",
        expected: digest,
        actual: got,
      });
  }
  for (const file of Object.keys(actual))
    if (!(file in declared.files))
      throw new PackageError("digest_mismatch", `${file} is not listed in ${FILE_MANIFEST}`, {
        file,
        reason: "unlisted",
      });
  // An empty directory (or one holding only other empty ones) is content no digest covers: refused like a file.
  const implied = impliedDirs(Object.keys(declared.files));
  for (const d of dirs)
    if (!implied.has(d))
      throw new PackageError("digest_mismatch", `directory ${d} holds no file listed in ${FILE_MANIFEST}`, {
        file: d,
        reason: "unlisted",
      });
  return { ...result, files: Object.keys(actual).length };
}

/**
 * Builds a package: writes hecate-files.json (and signs it when `privateKeyPem` is given), then a portable .tar.gz
 * of every file of `dir`, sorted, without a wrapper dir, modes normalised to 0644/0755.
 */
export async function packPlugin(
  dir: string,
  outFile: string,
  opts: { privateKeyPem?: string } = {},
): Promise<{ file: string; files: number; bytes: number }> {
  const root = resolve(dir);
  const out = resolve(outFile);
  if (out.startsWith(root + sep))
    throw new Error(`output file ${outFile} must be outside the package dir ${dir} (it would be packed into itself)`);
  await writeFileManifest(root);
  if (opts.privateKeyPem) await signFileManifest(root, opts.privateKeyPem);
  const files = await listFiles(root);
  await tarCreate(
    {
      gzip: { level: 9 },
      cwd: root,
      file: out,
      portable: true,
      onWriteEntry: (entry) => {
        // Only the type bits survive: no setuid/setgid/sticky, no group/world write, whatever the working copy had.
        if (entry.stat) entry.stat.mode = (entry.stat.mode & ~0o7777) | (entry.stat.mode & 0o111 ? 0o755 : 0o644);
      },
    },
    files,
  );
  return { file: out, files: files.length, bytes: (await stat(out)).size };
}

/**
 * Trusted signing keys from `$HECATE_HOME/trusted-keys/*.pub` (PEM ed25519 public keys) and whether signatures are
 * required (`HECATE_REQUIRE_SIGNATURE=1`; the daemon option `requireSignature` overrides it). A key file that is not
 * an ed25519 public key is an operator error and throws, naming the file.
 */
export function loadTrustPolicy(home: string, env: NodeJS.ProcessEnv = process.env): TrustPolicy {
  const flag = env.HECATE_REQUIRE_SIGNATURE;
  return {
    requireSignature: flag === "1" || flag === "true",
    trustedKeys: loadTrustedKeys(join(home, "trusted-keys")),
  };
}

/** The ed25519 public keys (`*.pub`, PEM) in `dir`; none when it does not exist. */
export function loadTrustedKeys(dir: string): TrustedKey[] {
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => n.endsWith(".pub"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const trustedKeys: TrustedKey[] = [];
  for (const name of names.sort()) {
    const file = join(dir, name);
    const pem = readFileSync(file, "utf8");
    let keyId: string;
    try {
      keyId = keyIdOf(createPublicKey(pem));
    } catch (err) {
      throw new Error(`trusted key ${file} is not an ed25519 public key in PEM: ${(err as Error).message}`);
    }
    trustedKeys.push({ keyId, publicKeyPem: pem });
  }
  return trustedKeys;
}
