/**
 * Admin API access control: Unix-socket requests are trusted (the socket is 0600); TCP requests need the admin token
 * (Bearer header or the `hecate_admin` cookie). A DNS-rebinding guard checks Host and Origin on every /admin/ request.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import { dirname } from "node:path";
import { ApiError } from "./http.js";

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

const LOCAL_HOSTS = new Set(["localhost", "127.0.0.1", "[::1]"]);

export class AdminGuard {
  /** Sockets accepted by the Unix-socket server. */
  readonly trustedSockets = new WeakSet<Socket>();

  constructor(
    readonly token: string,
    private readonly allowedHosts: string[] = [],
  ) {}

  viaSocket(req: IncomingMessage): boolean {
    return this.trustedSockets.has(req.socket);
  }

  /** Throws 403 forbidden_host / forbidden_origin. */
  checkHostAndOrigin(req: IncomingMessage): void {
    if (this.viaSocket(req)) return;
    const host = req.headers.host ?? "";
    const hostname = host.replace(/:\d+$/, "").toLowerCase();
    if (!LOCAL_HOSTS.has(hostname) && !this.allowedHosts.includes(hostname) && !this.allowedHosts.includes(host))
      throw new ApiError(403, "forbidden_host", `Host ${JSON.stringify(host)} is not allowed for the admin API`);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}` && origin !== `https://${host}`)
      throw new ApiError(403, "forbidden_origin", `Origin ${JSON.stringify(origin)} does not match Host ${host}`);
  }

  /** Throws 401 unauthorized. */
  checkToken(req: IncomingMessage): void {
    if (this.viaSocket(req)) return;
    const auth = req.headers.authorization;
    const bearer = auth?.startsWith("Bearer ") ? auth.slice(7).trim() : undefined;
    const given = bearer ?? cookie(req, "hecate_admin");
    if (!given || !this.matches(given))
      throw new ApiError(401, "unauthorized", "admin token required (Authorization: Bearer <run/admin.token>)");
  }

  matches(given: string): boolean {
    const a = Buffer.from(given);
    const b = Buffer.from(this.token);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

function cookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(";")) {
    const i = part.indexOf("=");
    if (i > 0 && part.slice(0, i).trim() === name) {
      try {
        return decodeURIComponent(part.slice(i + 1).trim());
      } catch {
        return undefined; // malformed %-encoding: no usable token (401, not 500)
      }
    }
  }
  return undefined;
}
