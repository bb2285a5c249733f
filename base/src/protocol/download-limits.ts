import { z } from 'zod';

/**
 * Limits on a pack download (issue 24, docs/traffic.md): a bandwidth cap, and a window of local
 * time in an IANA zone outside which the download pauses (and resumes by Range inside it). Set in
 * the agent config and per rollout (the install command carries the rollout's); the probe applies
 * the stricter of the two: the lower cap, and only times inside both windows.
 */
const hhmm = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM, 00:00 to 23:59');

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

export const downloadWindowSchema = z
  .object({
    /** Local times in `timeZone`; an end before the start runs over midnight; start = end is the whole day. */
    start: hhmm,
    end: hhmm,
    timeZone: z.string().max(64).refine(isTimeZone, 'an IANA time zone, e.g. Europe/Paris or UTC'),
  })
  .strict();
export type DownloadWindow = z.infer<typeof downloadWindowSchema>;

export const downloadLimitsSchema = z
  .object({
    /** Bytes per second, averaged over seconds (at least 1 KiB/s). */
    maxBytesPerSecond: z.number().int().min(1024).max(10 * 1024 ** 3).optional(),
    window: downloadWindowSchema.optional(),
  })
  .strict();
export type DownloadLimits = z.infer<typeof downloadLimitsSchema>;
