// The progress bar of `aha train` on a terminal: one line on stderr, drawn again after every step
// (step N/M, loss, reward, tokens/s, ETA). The ETA is the mean step time of this session times
// the steps left: a resumed run's earlier steps took no time here.

export interface ProgressFields {
  step: number;
  totalSteps: number;
  loss: number;
  /** GRPO's mean reward. */
  reward?: number;
  tokensPerSecond: number;
}

/** 511.6 MB (decimal megabytes, as the bench reports print sizes). */
export function formatMegabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** 42s, 3:05, 1:02:03. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** The bar's text; eta null before the first step of the session is done. */
export function progressLine(f: ProgressFields, eta: number | null, width = 20): string {
  const done = Math.min(width, Math.round((f.step / Math.max(f.totalSteps, 1)) * width));
  return (
    `[${'#'.repeat(done)}${'.'.repeat(width - done)}] step ${f.step}/${f.totalSteps}` +
    (f.reward !== undefined ? ` · reward ${f.reward.toFixed(3)}` : '') +
    ` · loss ${f.loss.toFixed(4)} · ${f.tokensPerSecond.toFixed(0)} tok/s · ETA ${eta === null ? '?' : formatDuration(eta)}`
  );
}

interface Terminal {
  write(text: string): unknown;
  columns?: number;
}

export class StepProgress {
  private drawn = '';

  /** `fromStep`: the step the session starts after (a resumed run's checkpoint). */
  constructor(
    private readonly out: Terminal,
    private readonly fromStep: number,
    private readonly startedAt = performance.now(),
  ) {}

  update(f: ProgressFields, now = performance.now()): void {
    const steps = f.step - this.fromStep;
    const eta = steps > 0 ? ((now - this.startedAt) / 1000 / steps) * (f.totalSteps - f.step) : null;
    const line = progressLine(f, eta);
    this.drawn = this.out.columns ? line.slice(0, this.out.columns - 1) : line;
    this.out.write(`\r${this.drawn}\x1b[K`);
  }

  /** A line of its own (a warning) above the bar, which is drawn again under it. */
  note(text: string): void {
    this.out.write(`\r\x1b[K${text}\n${this.drawn}`);
  }

  /** Leaves the bar as it is and moves below it. */
  end(): void {
    if (this.drawn) this.out.write('\n');
    this.drawn = '';
  }
}
