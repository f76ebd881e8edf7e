/**
 * VerifiedSocket with real Unix sockets on the host: only a socket owned by the plugin's uid with one link is
 * accepted (symlinks, hard links to someone else's socket, files, dirs, FIFOs are refused), and a connection to
 * `/proc/self/fd/{fd}` reaches the verified inode whatever later happens to the path.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chownSync, linkSync, mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { UntrustedSocketError, VerifiedSocket } from "../../src/container/verified-socket.js";

const PLUGIN_UID = 200_777;

function serve(path: string, answer: string): Promise<Server> {
  const s = createServer((c) => c.end(answer));
  return new Promise((resolve) => s.listen(path, () => resolve(s)));
}

/** What a connection to `path` reads, or its error code. */
function dial(path: string): Promise<string> {
  return new Promise((resolve) => {
    let got = "";
    const c = connect(path);
    c.on("data", (d) => {
      got += d;
    });
    c.on("end", () => resolve(got));
    c.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

function refused(path: string, uid: number, reason: RegExp): void {
  assert.throws(
    () => VerifiedSocket.open(path, uid),
    (err: Error) => err instanceof UntrustedSocketError && reason.test(err.reason),
  );
}

describe("VerifiedSocket (real sockets)", () => {
  let dir: string;
  const servers: Server[] = [];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "hct-vs-"));
  });
  after(() => {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("accepts the plugin's own socket and keeps reaching it after the path is replaced by a symlink", async () => {
    const admin = join(dir, "admin.sock");
    const sock = join(dir, "plugin.sock");
    servers.push(await serve(admin, "admin"), await serve(sock, "plugin"));
    chownSync(sock, PLUGIN_UID, PLUGIN_UID);
    const v = VerifiedSocket.open(sock, PLUGIN_UID);
    try {
      assert.equal(v.path, `/proc/self/fd/${v.fd}`);
      assert.equal(await dial(v.path), "plugin");
      renameSync(sock, join(dir, "moved.sock"));
      symlinkSync("admin.sock", sock);
      assert.equal(await dial(sock), "admin", "following the path would reach the admin socket");
      assert.equal(await dial(v.path), "plugin", "the verified fd still reaches the plugin's socket");
    } finally {
      v.close();
    }
    assert.equal(v.isOpen, false);
  });

  it("refuses a symlink (even to a socket the plugin owns), other owners, hard links, files, dirs and FIFOs", async () => {
    const own = join(dir, "own.sock");
    servers.push(await serve(own, "own"));
    chownSync(own, PLUGIN_UID, PLUGIN_UID);
    symlinkSync(own, join(dir, "link.sock"));
    refused(join(dir, "link.sock"), PLUGIN_UID, /a symlink/);
    // A root-owned socket hard-linked into the dir: someone else's inode.
    const rootSock = join(dir, "root.sock");
    servers.push(await serve(rootSock, "root"));
    linkSync(rootSock, join(dir, "hard.sock"));
    refused(join(dir, "hard.sock"), PLUGIN_UID, /owned by uid 0/);
    refused(join(dir, "hard.sock"), 0, /2 links/);
    // Its own socket under two names: refused too (the inode is reachable elsewhere).
    linkSync(own, join(dir, "own-alias.sock"));
    refused(own, PLUGIN_UID, /2 links/);
    writeFileSync(join(dir, "file.sock"), "x");
    chownSync(join(dir, "file.sock"), PLUGIN_UID, PLUGIN_UID);
    refused(join(dir, "file.sock"), PLUGIN_UID, /a regular file/);
    mkdirSync(join(dir, "dir.sock"));
    refused(join(dir, "dir.sock"), PLUGIN_UID, /a directory/);
    execFileSync("mkfifo", [join(dir, "fifo.sock")]);
    refused(join(dir, "fifo.sock"), PLUGIN_UID, /a FIFO/);
    assert.throws(() => VerifiedSocket.open(join(dir, "none.sock"), PLUGIN_UID), { code: "ENOENT" });
  });

  it("unlink + re-bind: the verified inode is dead (refused), the new socket on the path is never reached", async () => {
    const sock = join(dir, "rebind.sock");
    const first = await serve(sock, "first");
    chownSync(sock, PLUGIN_UID, PLUGIN_UID);
    const v = VerifiedSocket.open(sock, PLUGIN_UID);
    try {
      assert.equal(await dial(v.path), "first");
      await new Promise((r) => first.close(r)); // a closing Unix server unlinks its path
      rmSync(sock, { force: true });
      servers.push(await serve(sock, "second"));
      assert.equal(await dial(v.path), "ECONNREFUSED");
    } finally {
      v.close();
    }
  });
});
