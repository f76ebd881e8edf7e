/** `/health`'s per-plugin answers: every plugin loaded in this host, each within the timeout (then `down`). */
import type { PluginHealth } from "@hecate/sdk";
import { answerWithin } from "../util/answer-within.js";

export interface HealthProvider {
  names(): string[];
  health(name: string, timeoutMs: number): Promise<PluginHealth | undefined>;
}

export async function gatherHealth(
  providers: HealthProvider[],
  timeoutMs: number,
): Promise<Record<string, PluginHealth>> {
  const asks = providers.flatMap((p) => p.names().map((name) => [name, p] as const));
  const answers = await Promise.all(
    asks.map(async ([name, p]) => {
      const late: PluginHealth = { status: "down", detail: `no answer to the health check within ${timeoutMs} ms` };
      const h = await answerWithin<PluginHealth | undefined>(p.health(name, timeoutMs), timeoutMs, (err) =>
        err === undefined ? late : { status: "down", detail: (err as Error).message ?? String(err) },
      );
      return [name, h] as const;
    }),
  );
  const out: Record<string, PluginHealth> = {};
  for (const [name, h] of answers.sort((a, b) => a[0].localeCompare(b[0]))) if (h) out[name] = h;
  return out;
}
