/**
 * The daemon never follows a path inside a plugin-writable dir. A container plugin binds its socket in its own socket
 * dir (writable by it); the daemon opens that entry once with `O_PATH | O_NOFOLLOW` (the final component is never
 * followed: a symlink yields an fd on the link itself), checks the inode with `fstat` (a socket, owned by the
 * plugin's uid) and from then on dials `/proc/self/fd/{fd}`: the kernel resolves that magic link to the verified inode
 * whatever the plugin later does to the path (rename, unlink, symlink, re-bind). A plugin that unlinks and re-binds
 * leaves the verified inode dead: connections are refused, the health probe fails and ContainerPlugins restarts it (and
 * verifies the new socket).
 *
 * Node has no openat/dup2 bindings; numeric open flags are passed through to open(2), so O_PATH (Linux only) works.
 */
import { closeSync, constants, fstatSync, openSync } from "node:fs";

/** Linux `O_PATH` (not exported by node:fs). */
const O_PATH = 0o10000000;
/** Linux `O_CLOEXEC` (libuv adds it to every open anyway; explicit for the fd that must never leak to a child). */
const O_CLOEXEC = 0o2000000;

export class UntrustedSocketError extends Error {
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`${path}: ${reason}; refusing to connect`);
    this.name = "UntrustedSocketError";
  }
}

/** What `fstat` says the entry is, in words for the error message. */
function kindOf(mode: number): string {
  switch (mode & constants.S_IFMT) {
    case constants.S_IFLNK:
      return "a symlink";
    case constants.S_IFREG:
      return "a regular file";
    case constants.S_IFDIR:
      return "a directory";
    case constants.S_IFIFO:
      return "a FIFO";
    case constants.S_IFCHR:
    case constants.S_IFBLK:
      return "a device";
    default:
      return "not a socket";
  }
}

/** An fd on a verified socket inode; `path` is what every connection dials. */
export class VerifiedSocket {
  /** `/proc/self/fd/{fd}`: valid only while this object is open (fd numbers are reused after close). */
  readonly path: string;
  private open = true;

  private constructor(readonly fd: number) {
    this.path = `/proc/self/fd/${fd}`;
  }

  /**
   * Opens `path` without following it and checks the inode: a socket owned by `uid` with exactly one link (a hard
   * link to some other socket has the other socket's owner, and a link count > 1 means the inode is also reachable
   * elsewhere). Throws UntrustedSocketError (nothing stays open) or the open error (ENOENT while it is not bound yet).
   */
  static open(path: string, uid: number): VerifiedSocket {
    const fd = openSync(path, O_PATH | constants.O_NOFOLLOW | O_CLOEXEC);
    try {
      const st = fstatSync(fd);
      if ((st.mode & constants.S_IFMT) !== constants.S_IFSOCK) throw new UntrustedSocketError(path, kindOf(st.mode));
      if (st.uid !== uid)
        throw new UntrustedSocketError(path, `socket owned by uid ${st.uid}, not the plugin's ${uid}`);
      if (st.nlink !== 1) throw new UntrustedSocketError(path, `socket has ${st.nlink} links (a hard link)`);
      return new VerifiedSocket(fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  }

  get isOpen(): boolean {
    return this.open;
  }

  /** Closes the fd: call only once nothing dials `path` any more (its number may be reused by another file). */
  close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }
}
