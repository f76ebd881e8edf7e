import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { list as tarList } from "tar";
import {
  computeFileDigests,
  extractPackage,
  FILE_MANIFEST,
  FILE_SIGNATURE,
  generateSigningKeyPair,
  loadTrustPolicy,
  PackageError,
  type PackageErrorCode,
  packPlugin,
  signFileManifest,
  type TrustPolicy,
  verifyPackageDir,
  writeFileManifest,
} from "../src/index.js";
import { removeDir, sha256, tempDir, writeTree } from "../src/testing/forge.js";

const NO_TRUST: TrustPolicy = { requireSignature: false, trustedKeys: [] };

function source(dir: string, name = "signed") {
  writeTree(dir, {
    "manifest.json": JSON.stringify({ name, version: "1.0.0" }),
    "dist/index.js": "export default {};\n",
    "priv/static/app.css": "body{}\n",
  });
}

async function rejectsWith(p: Promise<unknown>, code: PackageErrorCode, details?: Record<string, unknown>) {
  await assert.rejects(p, (err) => {
    assert.ok(err instanceof PackageError, String(err));
    assert.equal(err.code, code, err.message);
    if (details)
      for (const [k, v] of Object.entries(details)) assert.equal((err.details as Record<string, unknown>)[k], v);
    return true;
  });
}

test("integrity: packPlugin writes sorted digests of every file and a flat, sorted, portable archive", async () => {
  const home = tempDir();
  try {
    const src = join(home, "src");
    source(src);
    writeFileSync(join(src, "dist", "run.sh"), "#!/bin/sh\n", { mode: 0o4775 });
    const out = join(home, "p.tar.gz");
    const packed = await packPlugin(src, out);
    const fm = JSON.parse(readFileSync(join(src, FILE_MANIFEST), "utf8"));
    assert.deepEqual(Object.keys(fm.files), ["dist/index.js", "dist/run.sh", "manifest.json", "priv/static/app.css"]);
    assert.equal(fm.files["dist/index.js"], sha256("export default {};\n"));
    assert.deepEqual(fm, { version: 1, algorithm: "sha256", files: await computeFileDigests(src) });
    const entries: { path: string; mode: number; uid?: number }[] = [];
    await tarList({
      file: out,
      onReadEntry: (e) => entries.push({ path: e.path, mode: e.mode ?? -1, uid: e.header.uid }),
    });
    assert.deepEqual(
      entries.map((e) => e.path),
      ["dist/index.js", "dist/run.sh", FILE_MANIFEST, "manifest.json", "priv/static/app.css"],
    );
    assert.equal(entries.find((e) => e.path === "dist/run.sh")?.mode, 0o755, "setuid stripped, group write dropped");
    assert.equal(entries.find((e) => e.path === "manifest.json")?.mode, 0o644);
    assert.equal(packed.files, 5);
    await assert.rejects(packPlugin(src, join(src, "self.tar.gz")), /outside the package dir/);
    symlinkSync("/etc/passwd", join(src, "link"));
    await rejectsWith(packPlugin(src, out), "link_entry", { file: "link" });
  } finally {
    removeDir(home);
  }
});

test("integrity: signatures per trust policy (signed, unsigned, untrusted, bad) at install", async () => {
  const home = tempDir();
  try {
    const key = generateSigningKeyPair();
    const stranger = generateSigningKeyPair();
    assert.match(key.keyId, /^[0-9a-f]{16}$/);
    const trusted: TrustPolicy = {
      requireSignature: true,
      trustedKeys: [{ keyId: key.keyId, publicKeyPem: key.publicKeyPem }],
    };
    const target = (n: string) => join(home, "plugins", n, "package");

    const src = join(home, "src");
    source(src);
    await packPlugin(src, join(home, "unsigned.tar.gz"));
    await rejectsWith(extractPackage(join(home, "unsigned.tar.gz"), target("a"), { trust: trusted }), "unsigned");
    assert.equal(
      (await extractPackage(join(home, "unsigned.tar.gz"), target("a"), { trust: NO_TRUST })).manifest.name,
      "signed",
    );

    await packPlugin(src, join(home, "signed.tar.gz"), { privateKeyPem: key.privateKeyPem });
    await extractPackage(join(home, "signed.tar.gz"), target("b"), { trust: trusted });
    assert.deepEqual(await verifyPackageDir(target("b"), trusted), { files: 3, signed: true, keyId: key.keyId });

    await packPlugin(src, join(home, "stranger.tar.gz"), { privateKeyPem: stranger.privateKeyPem });
    await rejectsWith(extractPackage(join(home, "stranger.tar.gz"), target("c"), { trust: trusted }), "untrusted_key");
    const lax = { ...trusted, requireSignature: false };
    assert.equal(
      (await extractPackage(join(home, "stranger.tar.gz"), target("c"), { trust: lax })).manifest.name,
      "signed",
    );

    // A signature that does not match the signed bytes: re-sign, then change the digests file by a byte.
    await writeFileManifest(src);
    await signFileManifest(src, key.privateKeyPem);
    appendFileSync(join(src, FILE_MANIFEST), " ");
    const { create } = await import("tar");
    await create({ gzip: true, cwd: src, file: join(home, "badsig.tar.gz"), portable: true }, [
      "manifest.json",
      "dist/index.js",
      "priv/static/app.css",
      FILE_MANIFEST,
      FILE_SIGNATURE,
    ]);
    await rejectsWith(extractPackage(join(home, "badsig.tar.gz"), target("d"), { trust: lax }), "bad_signature");
  } finally {
    removeDir(home);
  }
});

test("integrity: tampering after signing and after install is caught, naming the file", async () => {
  const home = tempDir();
  try {
    const key = generateSigningKeyPair();
    const trust: TrustPolicy = {
      requireSignature: true,
      trustedKeys: [{ keyId: key.keyId, publicKeyPem: key.publicKeyPem }],
    };
    const src = join(home, "src");
    source(src);
    await writeFileManifest(src);
    await signFileManifest(src, key.privateKeyPem);
    // writeFileManifest keeps a signature that still matches; packPlugin then ships it.
    await packPlugin(src, join(home, "ok.tar.gz"));
    const sig = readFileSync(join(src, FILE_SIGNATURE), "utf8");
    assert.equal(JSON.parse(sig).keyId, key.keyId);

    // Tampered after signing: a file changed, digests re-generated -> the old signature is dropped -> unsigned.
    writeFileSync(join(src, "dist", "index.js"), "export default { evil: true };\n");
    await packPlugin(src, join(home, "resigned.tar.gz"));
    await rejectsWith(extractPackage(join(home, "resigned.tar.gz"), join(home, "x", "package"), { trust }), "unsigned");

    const target = join(home, "plugins", "signed", "package");
    await extractPackage(join(home, "ok.tar.gz"), target, { trust });
    await verifyPackageDir(target, trust);
    writeFileSync(join(target, "dist", "index.js"), "export default { evil: true };\n");
    await rejectsWith(verifyPackageDir(target, trust), "digest_mismatch", {
      file: "dist/index.js",
      reason: "modified",
    });
    rmSync(join(target, "dist", "index.js"));
    await rejectsWith(verifyPackageDir(target, trust), "digest_mismatch", { file: "dist/index.js", reason: "missing" });
    writeFileSync(join(target, "dist", "index.js"), "export default {};\n");
    await verifyPackageDir(target, trust);
    mkdirSync(join(target, "dist", "extra"));
    writeFileSync(join(target, "dist", "extra", "x.js"), "");
    await rejectsWith(verifyPackageDir(target, trust), "digest_mismatch", {
      file: "dist/extra/x.js",
      reason: "unlisted",
    });
    rmSync(join(target, "dist", "extra"), { recursive: true });
    symlinkSync("/etc/passwd", join(target, "priv", "leak"));
    await rejectsWith(verifyPackageDir(target, trust), "digest_mismatch", { file: "priv/leak" });
    rmSync(join(target, "priv", "leak"));
    // a directory holding no listed file (empty, or only empty ones) is refused like an unlisted file
    mkdirSync(join(target, "dist", "empty", "deeper"), { recursive: true });
    await rejectsWith(verifyPackageDir(target, trust), "digest_mismatch", { file: "dist/empty", reason: "unlisted" });
    rmSync(join(target, "dist", "empty"), { recursive: true });
    await verifyPackageDir(target, trust);
    // the integrity files replaced by a directory or a link: a PackageError, not a bare EISDIR
    const sigBytes = readFileSync(join(target, FILE_SIGNATURE));
    rmSync(join(target, FILE_SIGNATURE));
    mkdirSync(join(target, FILE_SIGNATURE));
    await rejectsWith(verifyPackageDir(target, trust), "bad_signature", { file: FILE_SIGNATURE, reason: "not_a_file" });
    rmSync(join(target, FILE_SIGNATURE), { recursive: true });
    writeFileSync(join(target, FILE_SIGNATURE), sigBytes);
    await verifyPackageDir(target, trust);
    const manifestBytes = readFileSync(join(target, FILE_MANIFEST));
    rmSync(join(target, FILE_MANIFEST));
    mkdirSync(join(target, FILE_MANIFEST));
    await rejectsWith(verifyPackageDir(target, trust), "missing_digests", {
      file: FILE_MANIFEST,
      reason: "not_a_file",
    });
    rmSync(join(target, FILE_MANIFEST), { recursive: true });
    writeFileSync(join(home, "elsewhere.json"), manifestBytes);
    symlinkSync(join(home, "elsewhere.json"), join(target, FILE_MANIFEST));
    await rejectsWith(verifyPackageDir(target, trust), "missing_digests", {
      file: FILE_MANIFEST,
      reason: "not_a_file",
    });
    rmSync(join(target, FILE_MANIFEST));
    writeFileSync(join(target, FILE_MANIFEST), manifestBytes);
    await verifyPackageDir(target, trust);
    rmSync(join(target, FILE_SIGNATURE));
    await rejectsWith(verifyPackageDir(target, trust), "unsigned");
    rmSync(join(target, FILE_MANIFEST));
    await rejectsWith(verifyPackageDir(target, NO_TRUST), "missing_digests");
  } finally {
    removeDir(home);
  }
});

test("integrity: loadTrustPolicy reads trusted-keys/*.pub and HECATE_REQUIRE_SIGNATURE", () => {
  const home = tempDir();
  try {
    assert.deepEqual(loadTrustPolicy(home, {}), { requireSignature: false, trustedKeys: [] });
    const a = generateSigningKeyPair();
    const b = generateSigningKeyPair();
    writeTree(join(home, "trusted-keys"), { "a.pub": a.publicKeyPem, "b.pub": b.publicKeyPem, README: "not a key" });
    const policy = loadTrustPolicy(home, { HECATE_REQUIRE_SIGNATURE: "1" });
    assert.equal(policy.requireSignature, true);
    assert.deepEqual(
      policy.trustedKeys.map((k) => k.keyId),
      [a.keyId, b.keyId],
    );
    writeFileSync(join(home, "trusted-keys", "c.pub"), "garbage");
    assert.throws(() => loadTrustPolicy(home, {}), /c\.pub/);
  } finally {
    removeDir(home);
  }
});
