/**
 * Records every admin API answer the tests of this process get and checks it against openapi.json on the spot.
 *
 * The `undici` package publishes each request on the `undici:request:*` diagnostics channels (head, body chunks,
 * end), so every request a test or the CLI makes is seen without wrapping each call. Node 20's built-in fetch uses
 * the undici bundled with Node, which publishes no body chunks: this module makes the package's Agent fetch's
 * global dispatcher (fetch itself is unchanged). Only requests
 * to origins registered with `watch()` are checked (`watchAll()` in the CLI's child processes, whose only peer is the
 * admin API). Node's http.request has no body channel: helpers built on it call `record()` themselves.
 *
 * A disagreement throws from the channel subscriber, which node:test reports as an uncaught exception of the test
 * that made the call (in a CLI child: the CLI dies with the message on stderr). Each checked exchange is appended
 * to `{HECATE_CONTRACT_DIR or $TMPDIR/hecate-contract}/{pid}.jsonl` (method, path, status, content type, body size
 * and problems) for counting across a run.
 */
import { subscribe } from "node:diagnostics_channel";
import { appendFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, setGlobalDispatcher } from "undici";
import { type Exchange, OpenApiContract } from "./openapi-check.js";

setGlobalDispatcher(new Agent());

/** Paths of the document that the plugin port serves too. */
const PLUGIN_PORT_PATHS = new Set(["/health", "/ready"]);

let contract: OpenApiContract | undefined;
const admin = new Set<string>();
const pluginPort = new Set<string>();
let all = false;
let count = 0;
export const LOG_DIR = process.env.HECATE_CONTRACT_DIR ?? join(tmpdir(), "hecate-contract");
const logFile = join(LOG_DIR, `${process.pid}.jsonl`);

export class ContractViolation extends Error {
  override name = "ContractViolation";
}

/** Checks the admin API at `origin` (e.g. `http://127.0.0.1:7771`); `plugin` = the plugin port (/health, /ready). */
export function watch(origin: string, kind: "admin" | "plugin" = "admin"): void {
  contract ??= new OpenApiContract();
  const o = new URL(origin).origin;
  // HECATE_ADMIN_PORT=shared: one origin serves both, the admin API included
  if (kind === "admin") {
    admin.add(o);
    pluginPort.delete(o);
  } else if (!admin.has(o)) pluginPort.add(o);
}

/** Stops checking `origin` (its daemon stopped: the port may serve something else later). */
export function unwatch(origin: string): void {
  const o = new URL(origin).origin;
  admin.delete(o);
  pluginPort.delete(o);
}

/** Checks every request of this process (the CLI, which talks to nothing but the admin API). */
export function watchAll(): void {
  all = true;
}

/** How many exchanges this process has checked. */
export function checkedCount(): number {
  return count;
}

function inScope(origin: string, path: string): boolean {
  const pathname = path.split("?")[0];
  // plugin URLs are the plugins' own contracts (also on a shared port)
  if (pathname === "/plugin" || pathname.startsWith("/plugin/")) return false;
  if (all || admin.has(origin)) return true;
  return pluginPort.has(origin) && PLUGIN_PORT_PATHS.has(pathname);
}

/** Checks one exchange; throws ContractViolation naming the call when it disagrees with the document. */
export function record(x: Exchange): void {
  contract ??= new OpenApiContract();
  const problems = contract.check(x);
  count++;
  try {
    mkdirSync(LOG_DIR, { recursive: true });
    const line = {
      method: x.method,
      path: x.path,
      status: x.status,
      type: x.headers["content-type"] ?? null,
      bytes: x.body?.length ?? null,
      problems,
    };
    appendFileSync(logFile, `${JSON.stringify(line)}\n`);
  } catch {
    // the log is for counting only; the check below is what matters
  }
  if (problems.length > 0)
    throw new ContractViolation(
      `admin API answer disagrees with openapi.json: ${x.method} ${x.path} -> ${x.status}\n  ${problems.join("\n  ")}`,
    );
}

interface UndiciRequest {
  origin: string | URL;
  method: string;
  path: string;
}

interface Pending {
  x: Exchange;
  chunks: Buffer[];
}

const pending = new WeakMap<object, Pending>();

function headersOf(raw: (Buffer | string)[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const k = String(raw[i]).toLowerCase();
    out[k] = k in out ? `${out[k]}, ${String(raw[i + 1])}` : String(raw[i + 1]);
  }
  return out;
}

subscribe("undici:request:headers", (m) => {
  const { request, response } = m as { request: UndiciRequest; response: { statusCode: number; headers: Buffer[] } };
  const origin = new URL(String(request.origin)).origin;
  if (!inScope(origin, request.path)) return;
  // 1xx (e.g. 100 Continue) are not answers
  if (response.statusCode < 200) return;
  pending.set(request, {
    x: {
      method: request.method,
      path: request.path,
      status: response.statusCode,
      headers: headersOf(response.headers),
      body: null,
    },
    chunks: [],
  });
});

subscribe("undici:request:bodyChunkReceived", (m) => {
  const { request, chunk } = m as { request: object; chunk: Buffer };
  pending.get(request)?.chunks.push(Buffer.from(chunk));
});

subscribe("undici:request:trailers", (m) => {
  const { request } = m as { request: object };
  const p = pending.get(request);
  if (!p) return;
  pending.delete(request);
  record({ ...p.x, body: Buffer.concat(p.chunks).toString("utf8") });
});

// An aborted answer (typically an event stream the test closed): its head and every complete event still count.
subscribe("undici:request:error", (m) => {
  const { request } = m as { request: object };
  const p = pending.get(request);
  if (!p) return;
  pending.delete(request);
  const text = Buffer.concat(p.chunks).toString("utf8");
  const stream = (p.x.headers["content-type"] ?? "").startsWith("text/event-stream");
  record({ ...p.x, body: stream ? text : null });
});
