/**
 * A cluster node's id: `HECATE_NODE_ID` (or the `nodeId` option) when given, else the one kept in
 * `$HECATE_HOME/node-id`, created once (host name + random suffix) so a restarted node is the same node.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function isValidNodeId(id: string): boolean {
  return NODE_ID.test(id);
}

export function resolveNodeId(home: string, given?: string): string {
  if (given !== undefined && given !== "") {
    if (!isValidNodeId(given))
      throw new Error(`invalid node id ${JSON.stringify(given)}: 1-63 of A-Z a-z 0-9 . _ - (not starting with . _ -)`);
    return given;
  }
  const file = join(home, "node-id");
  try {
    const kept = readFileSync(file, "utf8").trim();
    if (isValidNodeId(kept)) return kept;
    throw new Error(`${file} holds an invalid node id ${JSON.stringify(kept)}: fix or delete it`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const host =
    hostname()
      .replace(/[^A-Za-z0-9._-]/g, "-")
      .replace(/^[._-]+/, "")
      .slice(0, 40) || "node";
  const id = `${host}-${randomBytes(4).toString("hex")}`;
  try {
    writeFileSync(file, `${id}\n`, { flag: "wx", mode: 0o600 });
    return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    return readFileSync(file, "utf8").trim(); // another start won the race: use its id
  }
}
