import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";

/** Size and sha256 of a file, read as a stream (uploads may be 256 MiB). */
export async function fileDigest(file: string): Promise<{ bytes: number; sha256: string } | null> {
  const hash = createHash("sha256");
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(file)) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch {
    return null; // gone already (or never fully written): the refusal is still recorded
  }
  return { bytes, sha256: hash.digest("hex") };
}
