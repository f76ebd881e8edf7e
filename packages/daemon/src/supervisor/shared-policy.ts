/**
 * The operator's policy for `isolation: "shared"` plugins (direct calls on the plugin host's main thread) and when
 * the host that runs them is recycled:
 * - `allow` (default true; env HECATE_ALLOW_SHARED=0 refuses): a refused plugin fails to load with stage `policy`
 *   and says how to get it loaded, nothing falls back silently;
 * - `recycleAfterGenerations` (default 16; env HECATE_SHARED_RECYCLE_GENERATIONS) and `recycleAfterBytes` (default
 *   256 MiB; env HECATE_SHARED_RECYCLE_MB): ESM cannot be unloaded, so every unload or upgrade of a shared plugin
 *   leaves its old module graph in the host; past either threshold (counted generations, or the heap they took at
 *   load) the supervisor recycles the main host with zero downtime. 0 turns a threshold off.
 */
export interface SharedPolicyOptions {
  allow?: boolean;
  recycleAfterGenerations?: number;
  recycleAfterBytes?: number;
}

export const DEFAULT_SHARED_POLICY: Required<SharedPolicyOptions> = {
  allow: true,
  recycleAfterGenerations: 16,
  recycleAfterBytes: 256 * 2 ** 20,
};

/** A shared plugin the operator's policy refuses. */
export class SharedRefusedError extends Error {
  readonly stage = "policy";
  readonly code = "shared_refused";
  constructor(readonly plugin: string) {
    super(
      `plugin ${plugin} asks for isolation "shared" (direct calls on the plugin host's main thread), which this daemon refuses (HECATE_ALLOW_SHARED=0): allow it, or use a build of the plugin with "isolation": "worker"`,
    );
    this.name = "SharedRefusedError";
  }
}

/** The policy from the environment (main.ts), undefined fields left to the defaults. */
export function sharedPolicyFromEnv(env: NodeJS.ProcessEnv): SharedPolicyOptions {
  const out: SharedPolicyOptions = {};
  if (env.HECATE_ALLOW_SHARED !== undefined) {
    const v = env.HECATE_ALLOW_SHARED.trim().toLowerCase();
    if (!["0", "1", "true", "false", "yes", "no"].includes(v))
      throw new Error(`HECATE_ALLOW_SHARED must be 0 or 1, got ${JSON.stringify(env.HECATE_ALLOW_SHARED)}`);
    out.allow = ["1", "true", "yes"].includes(v);
  }
  const count = (name: string, scale = 1): number | undefined => {
    const raw = env[name];
    if (raw === undefined || raw.trim() === "") return undefined;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer, got ${raw}`);
    return n * scale;
  };
  const generations = count("HECATE_SHARED_RECYCLE_GENERATIONS");
  const bytes = count("HECATE_SHARED_RECYCLE_MB", 2 ** 20);
  if (generations !== undefined) out.recycleAfterGenerations = generations;
  if (bytes !== undefined) out.recycleAfterBytes = bytes;
  return out;
}

/** True when what a host reports it leaked passes a threshold. */
export function leakPastThreshold(
  leak: { generations: number; bytes: number },
  p: Required<SharedPolicyOptions>,
): string | undefined {
  if (p.recycleAfterGenerations > 0 && leak.generations >= p.recycleAfterGenerations)
    return `${leak.generations} unloaded shared plugin generations (threshold ${p.recycleAfterGenerations})`;
  if (p.recycleAfterBytes > 0 && leak.bytes >= p.recycleAfterBytes)
    return `${Math.round(leak.bytes / 2 ** 20)} MiB left by unloaded shared plugin generations (threshold ${Math.round(p.recycleAfterBytes / 2 ** 20)} MiB)`;
  return undefined;
}
