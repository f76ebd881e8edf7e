/**
 * Admin API access control. Who gets in:
 * - A Unix-socket connection whose PEER CREDENTIALS (SO_PEERCRED, read once per connection in admin/peer.ts) name a
 *   process of the daemon's own uid (or root) other than the supervisor itself and its plugin-host processes (where
 *   plugin code and the container proxy run). The kernel records them at connect(): a plugin cannot forge them.
 *   Being "on the socket" grants nothing: a connection a plugin host made (e.g. its container proxy dialing a
 *   `plugin.sock` a plugin swapped for a link to `hecate.sock`) has a host's pid and is refused, as is any other uid
 *   (e.g. a container's). What guarantees the rest: the socket is 0600
 *   in `run/` (0700, owned by the daemon's uid; checked at start and refused otherwise: `checkRunDir`), so other
 *   uids cannot even connect; the peer check holds even if those modes were loosened. When peer credentials cannot
 *   be read (koffi missing, another OS) no socket connection is trusted and the token is needed there too.
 *   The rule is "an operator's process", not "any process of the uid". (A process an in-process plugin spawns runs
 *   with the daemon's uid under its own pid: in-process plugins are trusted code, see the README's threat model.)
 * - Anything else (TCP, untrusted socket peers) needs the admin token as `Authorization: Bearer` (the CLI) or a live
 *   login session in the `hecate_admin` cookie (the admin page; admin/sessions.ts: a random id, never the token).
 * A DNS-rebinding guard (Host allow-list, Origin = Host) runs on every /admin/ request except trusted socket ones.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { dirname } from "node:path";
import type { HostAllowList } from "../http/host-allow.js";
import { ApiError } from "./http.js";
import { type PeerCredentials, peerCredentials } from "./peer.js";
import { SESSION_COOKIE, type SessionStore } from "./sessions.js";

/** Reads `run/admin.token` or creates it (0600, 32 random bytes hex). */
export function ensureToken(file: string): string {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (existsSync(file)) {
    const t = readFileSync(file, "utf8").trim();
    if (t.length >= 32) {
      chmodSync(file, 0o600);
      return t;
    }
  }
  const token = randomBytes(32).toString("hex");
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return token;
}

/**
 * `run/` must be a real directory (not a link) owned by the daemon's uid; it is set to 0700. Throws otherwise: the
 * admin socket, token and pid file live there, and another owner could swap them.
 */
export function checkRunDir(dir: string): void {
  const st = lstatSync(dir);
  const uid = process.geteuid?.() ?? st.uid;
  if (!st.isDirectory() || st.uid !== uid)
    throw new Error(
      `${dir} must be a directory owned by uid ${uid} (found ${st.isDirectory() ? `owner uid ${st.uid}` : "not a directory"}): refusing to put the admin socket there`,
    );
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}

/** On every admin response (page, API, login, errors, event streams): the admin page is never framed. */
export const ADMIN_RESPONSE_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": "frame-ancestors 'none'",
  "x-frame-options": "DENY",
  "x-content-type-options": "nosniff",
  // the login link carries the token in its query: never leak it in a Referer
  "referrer-policy": "no-referrer",
};

export interface AdminGuardOptions {
  hosts: HostAllowList;
  sessions: SessionStore;
  /** Trust socket connections from the daemon's own process (in-process tests only; default false). */
  trustSameProcess?: boolean;
  /** Pids never trusted on the socket (the plugin-host processes, where plugin code runs). */
  untrustedPids?: () => Iterable<number>;
}

export type SocketPeerDecision = { trusted: true; peer: PeerCredentials } | { trusted: false; reason: string };

export class AdminGuard {
  /** Unix-socket connections whose peer passed `admitSocketPeer`. */
  private readonly trustedSockets = new WeakSet<Socket>();

  constructor(
    readonly token: string,
    private readonly o: AdminGuardOptions,
  ) {}

  get sessions(): SessionStore {
    return this.o.sessions;
  }

  /** Called for each accepted Unix-socket connection: trusted only when its peer may administer the daemon. */
  admitSocketPeer(socket: Socket): SocketPeerDecision {
    const peer = peerCredentials(socket);
    const decision = decide(peer, this.o.trustSameProcess ?? false, new Set(this.o.untrustedPids?.() ?? []));
    if (decision.trusted) this.trustedSockets.add(socket);
    return decision;
  }

  /** True for a request on a Unix-socket connection whose peer was admitted. */
  trustedPeer(req: IncomingMessage): boolean {
    return this.trustedSockets.has(req.socket);
  }

  /** Throws 403 forbidden_host / forbidden_origin. */
  checkHostAndOrigin(req: IncomingMessage): void {
    if (this.trustedPeer(req)) return;
    const host = req.headers.host ?? "";
    if (!this.o.hosts.allows(host))
      throw new ApiError(403, "forbidden_host", `Host ${JSON.stringify(host)} is not allowed for the admin API`);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`)
      throw new ApiError(403, "forbidden_origin", `Origin ${JSON.stringify(origin)} does not match Host ${host}`);
  }

  /** Throws 401 unauthorized unless a trusted peer, the bearer token or a live session cookie. */
  checkAuth(req: IncomingMessage): void {
    if (this.trustedPeer(req)) return;
    const auth = req.headers.authorization;
    if (auth?.startsWith("Bearer ") && this.matches(auth.slice(7).trim())) return;
    if (this.liveSession(req) !== undefined) return;
    throw new ApiError(
      401,
      "unauthorized",
      "admin token required (Authorization: Bearer <run/admin.token>), or log in at /admin/login?token=...",
    );
  }

  /**
   * The first live session among the request's `hecate_admin` cookies. Several may arrive: cookies are not
   * port-scoped, so a plugin page can set a same-named cookie for the host; any one valid session is enough.
   */
  liveSession(req: IncomingMessage): string | undefined {
    return sessionCookies(req).find((id) => this.o.sessions.valid(id));
  }

  matches(given: string): boolean {
    const a = Buffer.from(given);
    const b = Buffer.from(this.token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

function decide(peer: PeerCredentials | null, trustSameProcess: boolean, untrusted: Set<number>): SocketPeerDecision {
  if (!peer) return { trusted: false, reason: "peer credentials unavailable" };
  const uid = process.geteuid?.();
  if (peer.uid !== uid && peer.uid !== 0)
    return { trusted: false, reason: `peer uid ${peer.uid} is neither the daemon's (${uid}) nor root` };
  if (peer.pid === process.pid && !trustSameProcess)
    return { trusted: false, reason: "the peer is the daemon process itself (a redirected daemon connection)" };
  if (untrusted.has(peer.pid))
    return { trusted: false, reason: `the peer is a plugin-host process (pid ${peer.pid}): plugin code runs there` };
  return { trusted: true, peer };
}

/** Every value of the `hecate_admin` cookie in the request (malformed ones skipped). */
export function sessionCookies(req: IncomingMessage): string[] {
  const header = req.headers.cookie;
  if (!header) return [];
  const out: string[] = [];
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === SESSION_COOKIE) {
      const v = part.slice(i + 1).trim();
      if (v !== "") out.push(v);
    }
  }
  return out;
}
