/**
 * The credentials of the process at the other end of an accepted Unix-socket connection (Linux SO_PEERCRED: the pid,
 * uid and gid the kernel recorded when the peer called connect(); the peer cannot forge them).
 *
 * Node has no API for SO_PEERCRED and no maintained npm package exposes it for a net.Socket (unix-socket-credentials
 * needs the long-dead ffi/ref addons; sockopt reads integer options only), so this calls libc's getsockopt() through
 * koffi (a maintained FFI with prebuilt binaries for every platform in its npm packages; no compiler, no install
 * script). The descriptor comes from `socket._handle.fd`: Node's internal but long-stable handle field (the same one
 * sockopt and every getsockopt addon read).
 */
import type { Socket } from "node:net";

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

type GetPeerCred = (fd: number) => PeerCredentials | null;

const SOL_SOCKET = 1;
const SO_PEERCRED = 17; // Linux (asm-generic/socket.h); x86-64 and arm64 share it

let impl: GetPeerCred | null | undefined;
let loadError: string | undefined;

async function load(): Promise<GetPeerCred | null> {
  if (impl !== undefined) return impl;
  try {
    if (process.platform !== "linux") throw new Error(`SO_PEERCRED is Linux only (platform ${process.platform})`);
    const { default: koffi } = await import("koffi");
    const libc = koffi.load("libc.so.6");
    koffi.struct("hecate_ucred", { pid: "int32", uid: "uint32", gid: "uint32" }); // struct ucred, named for below
    const getsockopt = libc.func("int getsockopt(int, int, int, _Out_ hecate_ucred *, _Inout_ uint32_t *)");
    impl = (fd) => {
      const out = { pid: 0, uid: 0, gid: 0 };
      const len = [12];
      return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, out, len) === 0 && len[0] === 12 ? out : null;
    };
  } catch (err) {
    loadError = (err as Error).message;
    impl = null;
  }
  return impl;
}

/**
 * Loads the getsockopt binding (once). Returns why peer credentials are unavailable, or undefined when they work:
 * the daemon then treats every socket connection as untrusted (token required) and logs the reason.
 */
export async function peerCredentialsUnavailable(): Promise<string | undefined> {
  await load();
  return impl ? undefined : loadError;
}

/** The peer of an accepted Unix-socket connection, or null (binding unavailable, socket closed, not AF_UNIX). */
export function peerCredentials(socket: Socket): PeerCredentials | null {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (!impl || typeof fd !== "number" || fd < 0) return null;
  return impl(fd);
}
