/**
 * Plugin settings: validation against the manifest's `settings` JSON Schema (ajv), secrets (`"writeOnly": true`
 * top-level properties) encrypted at rest with AES-256-GCM under a key in `$HECATE_HOME/settings.key` (0600, created
 * once), and the masked view the admin API answers.
 *
 * Stored form (what plugin_settings_changed_v1 carries and the aggregate folds): plain JSON values for ordinary
 * fields, `{"$enc": "v1.<iv>.<tag>.<ciphertext>"}` (base64url) for secrets. The ciphertext is bound to the plugin and
 * field name (GCM additional data), so it cannot be moved to another plugin or field.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmodSync, closeSync, openSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

export type SettingsValues = Record<string, unknown>;

/** A value that failed the schema: `field` is the setting's path (`rate_limit`, `smtp/port`), `""` for the whole. */
export interface SettingsFieldError {
  field: string;
  message: string;
}

/** What `GET /admin/api/plugins/{name}/settings` answers: secrets only as `{set}`, never their value. */
export interface SettingsView {
  plugin: string;
  /** The manifest's `settings` JSON Schema (null: the plugin declares no settings). */
  schema: Record<string, unknown> | null;
  /** Every non-secret setting the operator set. */
  values: SettingsValues;
  /** Every secret field of the schema, and whether it has a value. */
  secrets: Record<string, { set: boolean }>;
}

/** The settings given are not valid (details: the field errors); nothing is stored. */
export class SettingsError extends Error {
  constructor(
    readonly code: "invalid_settings" | "invalid_settings_schema" | "settings_incompatible",
    message: string,
    readonly details: SettingsFieldError[],
  ) {
    super(message);
    this.name = "SettingsError";
  }
}

const ENC = "$enc";
const KEY_FILE = "settings.key";

// Plugins' schemas may use keywords and formats of their own: not strict, unknown formats ignored.
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: true });
addFormats.default(ajv);
const withDefaults = new Ajv({ allErrors: true, strict: false, useDefaults: true });
addFormats.default(withDefaults);
const compiled = new WeakMap<object, { check: ValidateFunction; fill: ValidateFunction }>();

function validators(schema: Record<string, unknown>): { check: ValidateFunction; fill: ValidateFunction } {
  let v = compiled.get(schema);
  if (!v) {
    try {
      v = { check: ajv.compile(schema), fill: withDefaults.compile(schema) };
    } catch (err) {
      throw new SettingsError(
        "invalid_settings_schema",
        `the plugin's settings schema is not valid: ${(err as Error).message}`,
        [],
      );
    }
    compiled.set(schema, v);
  }
  return v;
}

function fieldOf(e: ErrorObject): string {
  const params = e.params as { missingProperty?: string; additionalProperty?: string };
  const extra =
    e.keyword === "required"
      ? params.missingProperty
      : e.keyword === "additionalProperties"
        ? params.additionalProperty
        : undefined;
  return `${e.instancePath}${extra !== undefined ? `/${extra}` : ""}`.slice(1);
}

function messageOf(e: ErrorObject): string {
  const params = e.params as { allowedValues?: unknown[] };
  if (e.keyword === "additionalProperties") return "unknown setting";
  if (e.keyword === "required") return "is required";
  if (e.keyword === "enum") return `must be one of ${JSON.stringify(params.allowedValues)}`;
  return e.message ?? e.keyword;
}

/** The field errors of `values` against `schema` (empty: valid). Messages never quote the value (it may be secret). */
export function settingsErrors(
  schema: Record<string, unknown> | undefined,
  values: SettingsValues,
): SettingsFieldError[] {
  if (!schema)
    return Object.keys(values).map((field) => ({
      field,
      message: "unknown setting (the plugin declares no settings)",
    }));
  const { check } = validators(schema);
  if (check(values)) return [];
  const seen = new Set<string>();
  const out: SettingsFieldError[] = [];
  for (const e of check.errors ?? []) {
    const d = { field: fieldOf(e), message: messageOf(e) };
    const k = `${d.field}\0${d.message}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(d);
    }
  }
  return out;
}

/** `values` with the schema's defaults filled in (what the plugin gets); unchanged when they do not validate. */
export function withSchemaDefaults(
  schema: Record<string, unknown> | undefined,
  values: SettingsValues,
): SettingsValues {
  if (!schema) return values;
  const copy = structuredClone(values);
  try {
    validators(schema).fill(copy);
  } catch {
    return values;
  }
  return copy;
}

/** The top-level properties marked `"writeOnly": true`. */
export function secretFields(schema: Record<string, unknown> | undefined): string[] {
  const props = (schema?.properties ?? {}) as Record<string, { writeOnly?: unknown } | undefined>;
  return Object.keys(props).filter((k) => props[k]?.writeOnly === true);
}

export function isEncrypted(v: unknown): v is { $enc: string } {
  return typeof v === "object" && v !== null && typeof (v as Record<string, unknown>)[ENC] === "string";
}

/** The settings key: 32 random bytes in `$HECATE_HOME/settings.key`, 0600, created once (never rewritten). */
export class SettingsVault {
  private key: Buffer | undefined;

  constructor(private readonly home: string) {}

  get keyFile(): string {
    return join(this.home, KEY_FILE);
  }

  /**
   * Cluster mode: every node encrypts and decrypts with the cluster's key (kept in PostgreSQL, see
   * cluster/cluster-node.ts `settingsKey`) instead of its own file, so a secret set through one node reaches the
   * plugin on every node.
   */
  useKey(key: Buffer): void {
    if (key.length !== 32) throw new Error(`the cluster's settings key is not 32 bytes (${key.length})`);
    this.key = key;
  }

  /** The key file's key when one exists (a node that ran alone before seeds the cluster's key with it). */
  existingKey(): Buffer | undefined {
    try {
      const key = readFileSync(this.keyFile);
      return key.length === 32 ? key : undefined;
    } catch {
      return undefined;
    }
  }

  private getKey(): Buffer {
    if (this.key) return this.key;
    const file = this.keyFile;
    try {
      // "wx": exactly one writer creates it; a second daemon start (or a race) reads the first one's key.
      const fd = openSync(file, "wx", 0o600);
      try {
        writeFileSync(fd, randomBytes(32));
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    if ((statSync(file).mode & 0o077) !== 0) chmodSync(file, 0o600);
    const key = readFileSync(file);
    if (key.length !== 32) throw new Error(`${file} is not a 32-byte settings key (${key.length} bytes)`);
    this.key = key;
    return key;
  }

  encrypt(plugin: string, field: string, value: unknown): { $enc: string } {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.getKey(), iv);
    c.setAAD(Buffer.from(`${plugin}\0${field}`));
    const ct = Buffer.concat([c.update(JSON.stringify(value), "utf8"), c.final()]);
    return {
      [ENC]: ["v1", iv, c.getAuthTag(), ct].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join("."),
    } as {
      $enc: string;
    };
  }

  /** Throws when the value was not encrypted with this home's key for this plugin and field. */
  decrypt(plugin: string, field: string, value: { $enc: string }): unknown {
    const [v, iv, tag, ct] = value[ENC].split(".");
    if (v !== "v1" || iv === undefined || tag === undefined || ct === undefined)
      throw new Error(`setting ${field}: unknown encrypted format`);
    const d = createDecipheriv("aes-256-gcm", this.getKey(), Buffer.from(iv, "base64url"));
    d.setAAD(Buffer.from(`${plugin}\0${field}`));
    d.setAuthTag(Buffer.from(tag, "base64url"));
    const clear = Buffer.concat([d.update(Buffer.from(ct, "base64url")), d.final()]).toString("utf8");
    return JSON.parse(clear);
  }

  /** Clear values -> stored form: every secret field of `schema` encrypted. */
  seal(plugin: string, schema: Record<string, unknown> | undefined, values: SettingsValues): SettingsValues {
    const secrets = new Set(secretFields(schema));
    const out: SettingsValues = {};
    for (const [k, v] of Object.entries(values)) out[k] = secrets.has(k) ? this.encrypt(plugin, k, v) : v;
    return out;
  }

  /**
   * Stored form -> clear values. A secret that cannot be decrypted (the key file was replaced) is left out, and
   * reported through `onError` (with the field name only).
   */
  open(plugin: string, stored: SettingsValues, onError?: (field: string, err: Error) => void): SettingsValues {
    const out: SettingsValues = {};
    for (const [k, v] of Object.entries(stored)) {
      if (!isEncrypted(v)) {
        out[k] = v;
        continue;
      }
      try {
        out[k] = this.decrypt(plugin, k, v);
      } catch (err) {
        onError?.(k, err as Error);
      }
    }
    return out;
  }
}

/** The admin view of stored settings: secrets (by schema, or anything stored encrypted) only as `{set}`. */
export function maskedView(
  plugin: string,
  schema: Record<string, unknown> | undefined,
  stored: SettingsValues,
): SettingsView {
  const secrets: Record<string, { set: boolean }> = {};
  for (const k of secretFields(schema)) secrets[k] = { set: false };
  const values: SettingsValues = {};
  for (const [k, v] of Object.entries(stored)) {
    if (isEncrypted(v) || k in secrets) secrets[k] = { set: true };
    else values[k] = v;
  }
  return { plugin, schema: schema ?? null, values, secrets };
}
