/**
 * Admin page login sessions: the `hecate_admin` cookie holds a random session id (never the admin token), looked up
 * in this in-memory map. A session ends at its absolute expiry (default 12 h after login), at `POST /admin/logout`,
 * or when all are revoked (`DELETE /admin/api/sessions`, `hecate admin logout-all`). Kept in memory only: a daemon
 * restart logs every browser out (the token, the CLI and the Unix socket are unaffected).
 */
import { randomBytes } from "node:crypto";

export const SESSION_COOKIE = "hecate_admin";
export const DEFAULT_SESSION_TTL_MS = 12 * 60 * 60 * 1000;

export interface SessionOptions {
  /** Absolute lifetime of a session (ms), default 12 h. */
  ttlMs?: number;
  /** Most live sessions; the oldest is dropped past it (default 1000). */
  max?: number;
  now?: () => number;
}

export class SessionStore {
  /** id -> expiry (ms since epoch); Map iteration order = creation order, oldest first. */
  private readonly sessions = new Map<string, number>();
  readonly ttlMs: number;
  private readonly max: number;
  private readonly now: () => number;

  constructor(o: SessionOptions = {}) {
    this.ttlMs = o.ttlMs ?? DEFAULT_SESSION_TTL_MS;
    if (!Number.isInteger(this.ttlMs) || this.ttlMs < 1)
      throw new Error(`admin session TTL must be a positive integer (ms), got ${this.ttlMs}`);
    this.max = o.max ?? 1000;
    this.now = o.now ?? Date.now;
  }

  /** A new session; returns its id (256 random bits, base64url: cookie-safe without encoding). */
  create(): string {
    this.prune();
    while (this.sessions.size >= this.max) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
    const id = randomBytes(32).toString("base64url");
    this.sessions.set(id, this.now() + this.ttlMs);
    return id;
  }

  /** True for a live session id (an expired one is removed). */
  valid(id: string): boolean {
    const expires = this.sessions.get(id);
    if (expires === undefined) return false;
    if (expires > this.now()) return true;
    this.sessions.delete(id);
    return false;
  }

  /** Ends one session; true when it existed. */
  revoke(id: string): boolean {
    return this.sessions.delete(id);
  }

  /** Ends every session; returns how many were live. */
  revokeAll(): number {
    this.prune();
    const n = this.sessions.size;
    this.sessions.clear();
    return n;
  }

  private prune(): void {
    const now = this.now();
    for (const [id, expires] of this.sessions) if (expires <= now) this.sessions.delete(id);
  }
}
