/** `/health`'s per-plugin answers: every plugin loaded in this host, each within the timeout (then `down`). */
import type { PluginHealth } from "@hecate/sdk";

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
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<PluginHealth>((resolve) => {
        timer = setTimeout(
          () => resolve({ status: "down", detail: `no answer to the health check within ${timeoutMs} ms` }),
          timeoutMs,
        );
      });
      const h = await Promise.race([
        p.health(name, timeoutMs).catch((err: Error) => ({ status: "down" as const, detail: err.message })),
        late,
      ]);
      clearTimeout(timer);
      return [name, h] as const;
    }),
  );
  const out: Record<string, PluginHealth> = {};
  for (const [name, h] of answers.sort((a, b) => a[0].localeCompare(b[0]))) if (h) out[name] = h;
  return out;
}
