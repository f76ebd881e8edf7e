/**
 * The Host allow-list against DNS rebinding, shared by the plugin listener (http/server.ts) and the admin guard: a
 * page loaded from `http://attacker.example:7770/` whose name later resolves to 127.0.0.1 sends
 * `Host: attacker.example:7770`, which no allowed name matches, so it reads nothing.
 *
 * Allowed by default: the loopback names (localhost, 127.0.0.1, [::1]) with any port. Extra entries (the bind
 * address, `allowedHosts` / HECATE_ALLOWED_HOSTS): `name` (any port) or `name:port` (that port only); IPv6 addresses
 * in brackets (`[fd00::1]`, `[fd00::1]:7770`); compared case-insensitively.
 */

export const LOOPBACK_HOSTS: readonly string[] = ["localhost", "127.0.0.1", "[::1]"];

export class HostAllowList {
  private readonly names = new Set<string>();
  private readonly withPort = new Set<string>();

  constructor(extra: readonly string[] = []) {
    for (const raw of [...LOOPBACK_HOSTS, ...extra]) {
      const entry = normalizeEntry(raw);
      if (!entry) throw new Error(`invalid allowed host ${JSON.stringify(raw)} (expected name, name:port or [v6])`);
      (entry.port === undefined ? this.names : this.withPort).add(entry.port === undefined ? entry.name : entry.full);
    }
  }

  /** The entries, for logs and error messages. */
  list(): string[] {
    return [...this.names, ...this.withPort];
  }

  /** True when the request's Host header (missing = refused) names this daemon. */
  allows(hostHeader: string | undefined): boolean {
    if (!hostHeader) return false;
    const h = splitHost(hostHeader.trim().toLowerCase());
    if (!h) return false;
    return this.names.has(h.name) || this.withPort.has(hostHeader.trim().toLowerCase());
  }
}

/** The name a bind address is reached under in a Host header (IPv6 in brackets); null for the wildcard addresses. */
export function bindAddressHost(address: string): string | null {
  if (address === "" || address === "0.0.0.0" || address === "::" || address === "[::]") return null;
  return address.includes(":") && !address.startsWith("[") ? `[${address}]` : address;
}

/** Parses a comma-separated list (HECATE_ALLOWED_HOSTS); blanks ignored. */
export function parseHostList(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}

function splitHost(host: string): { name: string; port?: string } | null {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(?::(\d{1,5}))?$/.exec(host);
  return m ? { name: m[1], ...(m[2] !== undefined ? { port: m[2] } : {}) } : null;
}

function normalizeEntry(raw: string): { name: string; port?: string; full: string } | null {
  const full = raw.trim().toLowerCase();
  const h = splitHost(full);
  return h ? { ...h, full } : null;
}
