/** Why a plugin package was refused. Stable codes: the lifecycle stores them in plugin_extract_failed_v1. */
export type PackageErrorCode =
  | "not_gzip"
  | "truncated"
  | "extra_gzip_member"
  | "data_after_eof"
  | "pax_global_path"
  | "corrupt_header"
  | "empty"
  | "path_traversal"
  | "absolute_path"
  | "link_entry"
  | "special_file"
  | "bad_mode"
  | "too_many_entries"
  | "file_too_large"
  | "total_too_large"
  | "extract_timeout"
  | "compression_ratio"
  | "name_too_long"
  | "too_deep"
  | "duplicate_entry"
  | "case_collision"
  | "missing_manifest"
  | "invalid_manifest"
  | "missing_code"
  | "sdk_shipped"
  | "digest_mismatch"
  | "missing_digests"
  | "unsigned"
  | "untrusted_key"
  | "bad_signature"
  | "engine_mismatch"
  | "name_mismatch";

export class PackageError extends Error {
  override name = "PackageError";
  constructor(
    readonly code: PackageErrorCode,
    message: string,
    /** e.g. `{ entry }` for archive entries, `{ file }` for digests, `[{ field, message }]` for the manifest. */
    readonly details?: unknown,
  ) {
    super(message);
  }

  toJSON(): { code: PackageErrorCode; message: string; details?: unknown } {
    return { code: this.code, message: this.message, details: this.details };
  }
}
