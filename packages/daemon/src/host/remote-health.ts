/** A plugin's health as seen by the isolated host that runs it: one `GET /health` on that host's Unix socket. */
import type { PluginHealth } from "@hecate/sdk";
import { Agent, request } from "undici";

export async function remoteHealth(socketPath: string, name: string, timeoutMs: number): Promise<PluginHealth> {
  const agent = new Agent({ connect: { socketPath }, connections: 1 });
  try {
    const r = await request("http://localhost/health", {
      dispatcher: agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const body = (await r.body.json()) as { plugins?: Record<string, PluginHealth> };
    return body.plugins?.[name] ?? { status: "down", detail: "not loaded in its isolated host" };
  } catch (err) {
    return { status: "down", detail: `isolated host did not answer: ${(err as Error).message}` };
  } finally {
    await agent.close().catch(() => {});
  }
}
