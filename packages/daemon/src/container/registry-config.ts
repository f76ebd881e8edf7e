/**
 * Per-registry settings of OCI installs, in `$HECATE_HOME/registries.json` (0600, written atomically):
 * credentials (username + password or token) and whether the registry is spoken to over plain HTTP.
 *
 * The password never leaves this module except as the `X-Registry-Auth` / `Authorization` header of a pull or a
 * registry request: `describeRegistries` (what the admin API answers) says only whether one is set. TLS is the
 * default; plain HTTP only for a loopback registry (127.0.0.0/8, ::1, localhost) or one set `insecure: true`.
 */
import { chmodSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { isLoopbackRegistry } from "./oci-reference.js";

export interface RegistryCredentials {
  username: string;
  password: string;
}

interface RegistryEntry {
  username?: string;
  password?: string;
  insecure?: boolean;
}

/** What may be shown of a registry's settings (never the password). */
export interface RegistryDescription {
  registry: string;
  username: string | null;
  passwordSet: boolean;
  insecure: boolean;
  /** How the daemon talks to it: https unless loopback or insecure. */
  scheme: "https" | "http";
}

export class RegistryConfigError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "RegistryConfigError";
  }
}

const REGISTRY = /^(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:]+\])(?::\d{1,5})?$/;

export function registriesFile(home: string): string {
  return join(home, "registries.json");
}

function read(home: string): Record<string, RegistryEntry> {
  let text: string;
  try {
    text = readFileSync(registriesFile(home), "utf8");
  } catch {
    return {};
  }
  let parsed: { registries?: Record<string, RegistryEntry> };
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new RegistryConfigError(
      "invalid_registry_config",
      `${registriesFile(home)} is not valid JSON (${(err as Error).message}): fix it or set the registries again`,
    );
  }
  return parsed.registries && typeof parsed.registries === "object" ? parsed.registries : {};
}

function write(home: string, registries: Record<string, RegistryEntry>): void {
  const file = registriesFile(home);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ registries }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
}

export function checkRegistryName(registry: string): string {
  const r = registry.toLowerCase();
  if (!REGISTRY.test(r))
    throw new RegistryConfigError("invalid_registry", `invalid registry ${JSON.stringify(registry)} (host[:port])`);
  return r;
}

export function registryCredentials(home: string, registry: string): RegistryCredentials | null {
  const e = read(home)[registry];
  return e?.username !== undefined && e.password !== undefined ? { username: e.username, password: e.password } : null;
}

/** True when the daemon talks to `registry` over plain HTTP (loopback, or set insecure by the operator). */
export function registryUsesPlainHttp(home: string, registry: string): boolean {
  return isLoopbackRegistry(registry) || read(home)[registry]?.insecure === true;
}

function describe(registry: string, e: RegistryEntry): RegistryDescription {
  const insecure = e.insecure === true;
  return {
    registry,
    username: e.username ?? null,
    passwordSet: e.password !== undefined,
    insecure,
    scheme: insecure || isLoopbackRegistry(registry) ? "http" : "https",
  };
}

export function describeRegistries(home: string): RegistryDescription[] {
  return Object.entries(read(home))
    .map(([r, e]) => describe(r, e))
    .sort((a, b) => a.registry.localeCompare(b.registry));
}

/**
 * Sets a registry's credentials and/or its plain-HTTP flag (a field left undefined keeps its value; `username: null`
 * removes the credentials). Returns what may be shown.
 */
export function setRegistry(
  home: string,
  registry: string,
  change: { username?: string | null; password?: string; insecure?: boolean },
): RegistryDescription {
  const name = checkRegistryName(registry);
  const all = read(home);
  const e: RegistryEntry = { ...all[name] };
  if (change.username === null) {
    delete e.username;
    delete e.password;
  } else if (change.username !== undefined) {
    if (change.password === undefined)
      throw new RegistryConfigError("invalid_body", "a username needs a password (or a token as password)");
    e.username = change.username;
    e.password = change.password;
  }
  if (change.insecure !== undefined) e.insecure = change.insecure;
  all[name] = e;
  write(home, all);
  return describe(name, e);
}

export function removeRegistry(home: string, registry: string): boolean {
  const name = checkRegistryName(registry);
  const all = read(home);
  if (!(name in all)) return false;
  delete all[name];
  write(home, all);
  return true;
}
