import { getConfig } from "@hecate/sdk";

export interface Settings {
  retentionHours: number;
  cleanupIntervalSeconds: number;
  maxAttachmentBytes: number;
  rateLimit: { capacity: number; refillPerSecond: number };
}

/** The operator's settings (validated by the daemon against manifest.settings) with the manifest's defaults. */
export function settings(): Settings {
  const s = getConfig().settings as Partial<Settings>;
  return {
    retentionHours: s.retentionHours ?? 168,
    cleanupIntervalSeconds: s.cleanupIntervalSeconds ?? 600,
    maxAttachmentBytes: s.maxAttachmentBytes ?? 20 * 1024 * 1024,
    rateLimit: { capacity: s.rateLimit?.capacity ?? 60, refillPerSecond: s.rateLimit?.refillPerSecond ?? 10 },
  };
}
