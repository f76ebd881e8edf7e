/**
 * Client of the daemon's admin API (packages/daemon/openapi.json; the CLI drives the daemon through nothing else).
 * Prefers the Unix socket `$HECATE_HOME/run/hecate.sock` (no token needed); with `--url` it goes over TCP with the
 * bearer token from `$HECATE_HOME/run/admin.token` (or `--token` / `HECATE_TOKEN`).
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Readable } from "node:stream";
import type { PluginView as DaemonPluginView } from "@hecate/daemon";
import { Agent, type Dispatcher, request } from "undici";
import { CliError, EXIT } from "./errors.js";

/** The daemon's own types of what the admin API returns (one definition: they cannot drift apart). */
export type { LifecycleEvent, LogLine, PluginListAnswer } from "@hecate/daemon";
/** `GET /admin/api/plugins/:name` adds the manifest to the view. */
export type PluginView = DaemonPluginView & { manifest?: Record<string, unknown> };

export interface StoredEvent {
  type: string;
  revision: number;
  position: number;
  data: Record<string, unknown>;
  createdAt: string;
}

export interface ConnectOptions {
  home: string;
  /** TCP base URL of the daemon's admin listener, e.g. http://127.0.0.1:7771; unset = Unix socket. */
  url?: string;
  token?: string;
}

export interface SseMessage {
  event: string;
  data: string;
}

/** Maps an admin API error code (or HTTP status) to the CLI's documented exit code. */
function exitCodeFor(status: number, code: string): number {
  if (status === 401 || status === 403) return EXIT.UNAUTHORIZED;
  if (status === 404) return EXIT.NOT_FOUND;
  if (status === 409) return EXIT.CONFLICT;
  if (status === 413 || status === 422 || status === 400) return EXIT.PACKAGE_REJECTED;
  return code === "unavailable" ? EXIT.DAEMON_UNREACHABLE : EXIT.FAILURE;
}

export class AdminClient {
  readonly dispatcher: Dispatcher;
  /** Origin used in request URLs (for the socket it is only a placeholder Host). */
  readonly origin: string;
  readonly viaSocket: boolean;
  readonly socketPath: string;
  private readonly token?: string;

  constructor(readonly options: ConnectOptions) {
    this.socketPath = join(options.home, "run", "hecate.sock");
    if (options.url) {
      this.viaSocket = false;
      this.origin = new URL(options.url).origin;
      this.dispatcher = new Agent({ keepAliveTimeout: 1000 });
      this.token = options.token ?? readToken(options.home);
    } else {
      this.viaSocket = true;
      this.origin = "http://localhost";
      this.dispatcher = new Agent({ connect: { socketPath: this.socketPath }, keepAliveTimeout: 1000 });
    }
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return this.token ? { ...extra, authorization: `Bearer ${this.token}` } : extra;
  }

  private unreachable(err: unknown): CliError {
    const where = this.viaSocket ? this.socketPath : this.origin;
    return new CliError(
      "daemon_unreachable",
      `cannot reach the hecate daemon at ${where} (${(err as Error).message}); start it with \`hecate start\``,
      EXIT.DAEMON_UNREACHABLE,
    );
  }

  /** Sends a request; returns the parsed JSON body of a 2xx answer, throws CliError with the API's error otherwise. */
  async call<T>(
    method: "GET" | "POST" | "PUT" | "DELETE",
    path: string,
    body?: { json: unknown } | { stream: Readable; contentType: string },
  ): Promise<T> {
    let res: Dispatcher.ResponseData;
    try {
      const headers: Record<string, string> = {};
      let payload: string | Readable | undefined;
      if (body && "json" in body) {
        headers["content-type"] = "application/json";
        payload = JSON.stringify(body.json);
      } else if (body) {
        headers["content-type"] = body.contentType;
        payload = body.stream;
      }
      res = await request(`${this.origin}${path}`, {
        method,
        headers: this.headers(headers),
        body: payload,
        dispatcher: this.dispatcher,
        // installs wait for the plugin to load (the daemon bounds that wait itself)
        headersTimeout: 0,
        bodyTimeout: 0,
      });
    } catch (err) {
      throw this.unreachable(err);
    }
    const text = await res.body.text();
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return parsed as T;
    const apiError = (parsed as { error?: { code?: string; message?: string; details?: unknown } } | undefined)?.error;
    const code = apiError?.code ?? `http_${res.statusCode}`;
    const message = apiError?.message ?? (text.slice(0, 500) || `HTTP ${res.statusCode}`);
    throw new CliError(code, message, exitCodeFor(res.statusCode, code), apiError?.details, res.statusCode);
  }

  /**
   * Opens a Server-Sent Events stream and yields its messages until `signal` aborts or the server ends it.
   * Resolves `opened` once the response head arrived, so callers can start an action only when they are listening.
   */
  async stream(path: string, signal: AbortSignal): Promise<AsyncGenerator<SseMessage>> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(`${this.origin}${path}`, {
        method: "GET",
        headers: this.headers({ accept: "text/event-stream" }),
        dispatcher: this.dispatcher,
        signal,
        headersTimeout: 0,
        bodyTimeout: 0,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      throw this.unreachable(err);
    }
    if (res.statusCode !== 200) {
      const text = await res.body.text();
      let code = `http_${res.statusCode}`;
      let message = text.slice(0, 500);
      try {
        const e = JSON.parse(text).error;
        code = e.code ?? code;
        message = e.message ?? message;
      } catch {
        // not JSON: keep the raw text
      }
      throw new CliError(code, message, exitCodeFor(res.statusCode, code), undefined, res.statusCode);
    }
    return parseSse(res.body, signal);
  }

  async close(): Promise<void> {
    await this.dispatcher.destroy();
  }
}

/** A minimal SSE parser (event/data fields only, which is all the daemon sends); comments and ids are ignored. */
async function* parseSse(body: AsyncIterable<Buffer>, signal: AbortSignal): AsyncGenerator<SseMessage> {
  let buffer = "";
  let event = "message";
  let data: string[] = [];
  try {
    for await (const chunk of body) {
      buffer += chunk.toString("utf8");
      let newline = buffer.indexOf("\n");
      while (newline >= 0) {
        const line = buffer.slice(0, newline).replace(/\r$/, "");
        buffer = buffer.slice(newline + 1);
        if (line === "") {
          if (data.length > 0) yield { event, data: data.join("\n") };
          event = "message";
          data = [];
        } else if (line.startsWith("event:")) {
          event = line.slice(6).trim();
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        }
        newline = buffer.indexOf("\n");
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
  }
}

export function readToken(home: string): string | undefined {
  const file = join(home, "run", "admin.token");
  return existsSync(file) ? readFileSync(file, "utf8").trim() : undefined;
}
