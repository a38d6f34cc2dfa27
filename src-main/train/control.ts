// Pause, resume and stop of a training loop (SFT or GRPO), from outside it: the app's buttons, or
// Ctrl-C in `aha train`. Nothing is cut short: the loop asks at the end of every step (between()),
// so a step under way always finishes, and the loop writes a checkpoint before it pauses or stops.

export type RunControlState = 'running' | 'pausing' | 'paused' | 'stopping';

export interface RunControlEvents {
  /** The loop is now waiting between two steps. */
  paused?(): void;
  /** The loop goes on after a pause. */
  resumed?(): void;
}

export class RunController {
  private pauseWanted = false;
  private stopWanted = false;
  private waiting = false;
  private wake: (() => void) | null = null;

  constructor(private readonly events: RunControlEvents = {}) {}

  get state(): RunControlState {
    if (this.stopWanted) return 'stopping';
    if (this.waiting) return 'paused';
    return this.pauseWanted ? 'pausing' : 'running';
  }

  /** Whether the loop should write a checkpoint at the end of this step (it pauses or stops there). */
  get holding(): boolean {
    return this.pauseWanted || this.stopWanted;
  }

  /** The loop waits after the step under way, until resume() or stop(). */
  pause(): void {
    if (!this.stopWanted) this.pauseWanted = true;
  }

  resume(): void {
    this.pauseWanted = false;
    this.wake?.();
  }

  /** The loop ends after the step under way (or at once when paused), with a checkpoint. */
  stop(): void {
    this.stopWanted = true;
    this.wake?.();
  }

  /** The loop's call between two steps: waits while paused; true when the run is to stop. */
  async between(): Promise<boolean> {
    if (this.pauseWanted && !this.stopWanted) {
      this.waiting = true;
      this.events.paused?.();
      while (this.pauseWanted && !this.stopWanted) await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
      this.waiting = false;
      if (!this.stopWanted) this.events.resumed?.();
    }
    return this.stopWanted;
  }
}
