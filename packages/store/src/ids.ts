import { createHash, randomUUID } from "node:crypto";

/** Namespace of hecate's deterministic ids (a fixed random uuid). */
export const HECATE_NAMESPACE = "6f1b7c52-3d0e-4f7a-9a51-2c8e4d9b0a13";

/**
 * RFC 4122 version-5 (SHA-1, name-based) uuid: the same name always gives the same id. Used to derive event ids from
 * command ids and command ids from triggering events, which makes re-dispatch after a crash write nothing twice.
 */
export function deterministicUuid(name: string, namespace: string = HECATE_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ""), "hex");
  if (ns.length !== 16) throw new TypeError(`namespace must be a uuid, got ${namespace}`);
  const hash = createHash("sha1").update(ns).update(name, "utf8").digest();
  hash[6] = (hash[6] & 0x0f) | 0x50;
  hash[8] = (hash[8] & 0x3f) | 0x80;
  const h = hash.subarray(0, 16).toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** Id of the `index`-th event decided for command `commandId`. */
export function eventIdForCommand(commandId: string, index: number): string {
  return deterministicUuid(`${commandId}:${index}`);
}

export function newId(): string {
  return randomUUID();
}
