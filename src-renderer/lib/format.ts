// How numbers read on screen: sizes, parameter counts, durations, the reasoning summary.

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export const tokens = (n: number) => plural(n, 'token');

/** Decimal units, as disks and download sizes are labelled: 1.5 GB = 1.5e9 bytes. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes <= 0) return '—';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${Number(value.toFixed(digits))} ${units[unit]}`;
}

/** 1.5e9 → "1.5B", 671e9 → "671B", 135e6 → "135M". */
export function formatParameters(n: number): string {
  if (!Number.isFinite(n) || n <= 0) return '—';
  const [div, suffix] = n >= 1e12 ? [1e12, 'T'] : n >= 1e9 ? [1e9, 'B'] : n >= 1e6 ? [1e6, 'M'] : [1e3, 'K'];
  const v = n / div;
  return `${Number(v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2))}${suffix}`;
}

/** Whole seconds, never "0 s": a reasoning step that happened took at least a moment. */
export function formatSeconds(ms: number): string {
  return `${Math.max(1, Math.round(ms / 1000))} s`;
}

/** The thinking block's folded line: "Thinking… 57 tokens" while it streams, then "Thought for 12 s · 340 tokens". */
export function thinkingSummary(thinking: boolean, reasoningMs: number, reasoningTokens: number): string {
  if (thinking) return reasoningTokens > 0 ? `Thinking… ${tokens(reasoningTokens)}` : 'Thinking…';
  return `Thought for ${formatSeconds(reasoningMs)} · ${tokens(reasoningTokens)}`;
}

/** Generation speed for the answer's footer, when there is enough to measure. */
export function tokensPerSecond(completionTokens: number, totalMs: number): string {
  if (completionTokens < 2 || totalMs <= 0) return '';
  return `${(completionTokens / (totalMs / 1000)).toFixed(1)} tok/s`;
}

/** Sidebar groups: Today, Yesterday, Previous 7 days, Previous 30 days, then by month. */
export function dayGroup(timestamp: number, now: number): string {
  const startOfToday = new Date(now);
  startOfToday.setHours(0, 0, 0, 0);
  const day = 86_400_000;
  const t = startOfToday.getTime();
  if (timestamp >= t) return 'Today';
  if (timestamp >= t - day) return 'Yesterday';
  if (timestamp >= t - 7 * day) return 'Previous 7 days';
  if (timestamp >= t - 30 * day) return 'Previous 30 days';
  return new Date(timestamp).toLocaleDateString('en-US', { month: 'long', year: 'numeric' });
}
