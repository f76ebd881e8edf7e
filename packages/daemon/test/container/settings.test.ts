/**
 * Settings of a container plugin (real Podman, real daemon): it gets them in its config at start (schema defaults
 * filled in, the secret decrypted), a change restarts it with them (a swap: it has no onSettingsChanged path), and the
 * secret is in clear in no file under $HECATE_HOME.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { cpSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packPlugin } from "@hecate/package";
import { startDaemon } from "../../src/daemon.js";
import { filesHolding } from "../admin/settings-plugin.js";
import { unixRequest } from "../lifecycle/helpers.js";
import { repoRoot, skipReason } from "./helpers.js";

const skip = skipReason();
const NAME = "container-settings";
const FIXTURE = join(repoRoot, "packages/daemon/test/container/fixtures/settings");
const SECRET = `ck-${randomBytes(10).toString("hex")}`;

describe("container plugin settings (real podman)", { skip, timeout: 180_000 }, () => {
  let work: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), "hct-set-"));
  });
  after(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it("init config has the settings; a change restarts the container with them; no secret in clear on disk", async () => {
    const src = join(work, "src");
    cpSync(FIXTURE, src, { recursive: true });
    const archive = join(work, `${NAME}.tar.gz`);
    await packPlugin(src, archive);
    const home = join(work, "home");
    const daemon = await startDaemon({
      home,
      port: 0,
      logLevel: "silent",
      containers: true,
      trustOwnProcessOnSocket: true,
    });
    try {
      const r = await unixRequest(daemon.socketPath, "POST", "/admin/api/plugins", readFileSync(archive), {
        "content-type": "application/gzip",
      });
      assert.equal(r.status, 201, r.body);
      const show = async () =>
        (await (await fetch(`${daemon.url}/plugin/${NAME}/api/settings`)).json()) as {
          instance: string;
          settings: Record<string, unknown>;
        };
      const first = await show();
      assert.deepEqual(first.settings, { greeting: "hi" });

      const put = await unixRequest(
        daemon.socketPath,
        "PUT",
        `/admin/api/plugins/${NAME}/settings`,
        JSON.stringify({ values: { limit: 9, apiKey: SECRET } }),
        { "content-type": "application/json" },
      );
      assert.equal(put.status, 200, put.body);
      assert.equal(put.json().applied, "swap");
      assert.ok(!put.body.includes(SECRET));
      const afterPut = await show();
      assert.notEqual(afterPut.instance, first.instance, "a new container");
      assert.deepEqual(afterPut.settings, {
        greeting: "hi",
        limit: 9,
        apiKey: createHash("sha256").update(SECRET).digest("hex"),
      });
      assert.deepEqual(filesHolding(home, SECRET).leaks, []);
    } finally {
      await daemon.close();
    }
  });
});
