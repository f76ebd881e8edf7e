/** An admin request over the Unix socket made by ANOTHER process (optionally another uid): what the CLI does. */
import { execFile } from "node:child_process";

export interface ChildReply {
  /** HTTP status, or the connect error's code (e.g. EACCES). */
  status: number | string;
  body: string;
}

const SCRIPT = `
const [socketPath, method, path, headers] = process.argv.slice(1);
const req = require("node:http").request({ socketPath, method, path, headers: JSON.parse(headers) }, (res) => {
  let body = "";
  res.setEncoding("utf8");
  res.on("data", (c) => (body += c));
  res.on("end", () => process.stdout.write(JSON.stringify({ status: res.statusCode, body })));
});
req.on("error", (e) => process.stdout.write(JSON.stringify({ status: e.code, body: "" })));
req.end();
`;

export function childSocketRequest(
  socketPath: string,
  path: string,
  o: { method?: string; headers?: Record<string, string>; uid?: number; gid?: number } = {},
): Promise<ChildReply> {
  const headers = JSON.stringify({ host: "localhost", ...o.headers });
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ["-e", SCRIPT, socketPath, o.method ?? "GET", path, headers],
      { timeout: 20_000, ...(o.uid !== undefined ? { uid: o.uid, gid: o.gid ?? o.uid } : {}) },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`child request failed: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout) as ChildReply);
      },
    );
  });
}
