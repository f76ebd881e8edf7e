import { createRequire } from "node:module";
import { isValidElementName, type PluginManifest } from "@hecate/sdk/contract";
import { isValidPluginName } from "@hecate/sdk/paths";
import { Ajv, type ErrorObject } from "ajv";
import semver from "semver";
import { PackageError } from "./errors.js";

const require = createRequire(import.meta.url);

/** The published JSON Schema of manifest.json (packages/sdk/manifest.schema.json), the single source of truth. */
export const manifestSchema: Record<string, unknown> = require("@hecate/sdk/manifest.schema.json");

export interface ManifestFieldError {
  /** JSON pointer of the offending field, e.g. `/name`, `/container/memory_mb`. */
  field: string;
  message: string;
}

const ajv = new Ajv({ allErrors: true, strict: true });
const validateSchema = ajv.compile(manifestSchema);

const ELEMENT_RULE =
  "must be a valid custom element name: starts with a-z, contains a hyphen, only a-z 0-9 - . _ (e.g. my-plugin-app), not a name HTML reserves";

function fieldOf(e: ErrorObject): string {
  const params = e.params as { missingProperty?: string; additionalProperty?: string };
  if (e.keyword === "required" && params.missingProperty) return `${e.instancePath}/${params.missingProperty}`;
  if (e.keyword === "additionalProperties" && params.additionalProperty)
    return `${e.instancePath}/${params.additionalProperty}`;
  return e.instancePath === "" ? "/" : e.instancePath;
}

function messageOf(e: ErrorObject): string {
  const params = e.params as { additionalProperty?: string; allowedValues?: unknown[] };
  if (e.keyword === "additionalProperties") return `unknown field ${params.additionalProperty}`;
  if (e.keyword === "enum") return `must be one of ${JSON.stringify(params.allowedValues)}`;
  if (e.keyword === "pattern" && e.instancePath === "/name")
    return "must be lower-case letters, digits, _ or -, starting with a letter or digit, at most 64 characters";
  if (e.keyword === "pattern" && e.instancePath === "/version") return "must be a semantic version (e.g. 1.2.3)";
  if (e.keyword === "pattern" && e.instancePath === "/ui/element") return ELEMENT_RULE;
  if (e.keyword === "pattern" && e.instancePath === "/ui/module" && !e.schemaPath.includes("relativePath"))
    return "must be an ES module file (ending in .js or .mjs)";
  if (e.keyword === "pattern" && e.schemaPath.includes("relativePath"))
    return "must be a relative path inside the package (no leading /, no .., no backslash)";
  return e.message ?? e.keyword;
}

/**
 * Validates a parsed manifest.json against the published schema plus what a schema cannot say (semver ranges,
 * the daemon version). Throws PackageError `invalid_manifest` with details `[{ field, message }]`, or
 * `engine_mismatch` when `engines.hecate` excludes `opts.hecateVersion`.
 */
export function validateManifest(value: unknown, opts: { hecateVersion?: string } = {}): PluginManifest {
  if (!validateSchema(value)) {
    const seen = new Set<string>();
    const details: ManifestFieldError[] = [];
    for (const e of validateSchema.errors ?? []) {
      const d = { field: fieldOf(e), message: messageOf(e) };
      const key = `${d.field}\0${d.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      details.push(d);
    }
    const summary = details.map((d) => `${d.field}: ${d.message}`).join("; ");
    throw new PackageError("invalid_manifest", `invalid manifest.json: ${summary}`, details);
  }
  const manifest = value as PluginManifest;
  // The schema pattern and the runtime check are the same rule; keep them from drifting apart.
  if (!isValidPluginName(manifest.name))
    throw new PackageError("invalid_manifest", `invalid manifest.json: /name: invalid plugin name`, [
      { field: "/name", message: "invalid plugin name" },
    ]);
  // The schema's pattern cannot list the names HTML reserves (font-face, missing-glyph...); the SDK's rule can.
  if (manifest.ui && !isValidElementName(manifest.ui.element))
    throw new PackageError("invalid_manifest", `invalid manifest.json: /ui/element: ${ELEMENT_RULE}`, [
      { field: "/ui/element", message: ELEMENT_RULE },
    ]);
  if (semver.valid(manifest.version) === null)
    throw new PackageError("invalid_manifest", `invalid manifest.json: /version: not a semantic version`, [
      { field: "/version", message: "must be a semantic version (e.g. 1.2.3)" },
    ]);
  if (manifest.isolation === "shared" && manifest.plugin_type === "container")
    throw new PackageError(
      "invalid_manifest",
      `invalid manifest.json: /isolation: "shared" is for in_process plugins`,
      [{ field: "/isolation", message: '"shared" is for in_process plugins (a container is always its own process)' }],
    );
  const range = manifest.engines?.hecate;
  if (range !== undefined) {
    if (semver.validRange(range) === null)
      throw new PackageError("invalid_manifest", `invalid manifest.json: /engines/hecate: not a semver range`, [
        { field: "/engines/hecate", message: `${JSON.stringify(range)} is not a semver range` },
      ]);
    if (opts.hecateVersion !== undefined && !semver.satisfies(opts.hecateVersion, range, { includePrerelease: true }))
      throw new PackageError(
        "engine_mismatch",
        `plugin ${manifest.name} requires hecate ${range}, this is hecate ${opts.hecateVersion}`,
        { field: "/engines/hecate", required: range, actual: opts.hecateVersion },
      );
  }
  return manifest;
}

/** Parses manifest.json bytes; JSON errors become `invalid_manifest` on field `/`. */
export function parseManifest(bytes: Uint8Array | string, opts: { hecateVersion?: string } = {}): PluginManifest {
  let value: unknown;
  try {
    value = JSON.parse(typeof bytes === "string" ? bytes : Buffer.from(bytes).toString("utf8"));
  } catch (err) {
    throw new PackageError("invalid_manifest", `manifest.json is not valid JSON: ${(err as Error).message}`, [
      { field: "/", message: "not valid JSON" },
    ]);
  }
  return validateManifest(value, opts);
}
