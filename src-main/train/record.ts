// A training run written into the database as it goes (db/runs.ts): the run when it starts, each
// step's metrics and a sample of its rollouts, pauses, and how it ended. A resumed run continues
// the row of the run in the same output folder. A failed write is reported and training goes on:
// losing a metric row is better than losing a run.
import type { Database } from '../db/index.ts';
import {
  createRun,
  getRun,
  latestRunIn,
  recordRunStep,
  restartRun,
  setRunStatus,
  setRunTotalSteps,
  type NewRun,
  type NewRunRollout,
  type Run,
  type RunStepMetrics,
} from '../db/runs.ts';
import type { GrpoRollout, GrpoStepMetrics } from './grpo-run.ts';
import type { StepMetrics } from './sft-run.ts';

const NO_GRPO = {
  rewardMean: null,
  rewardStd: null,
  rewards: null,
  fracRewardZeroStd: null,
  completionLengthMean: null,
  completionLengthMin: null,
  completionLengthMax: null,
  completionClippedShare: null,
  clipLowMean: null,
  clipHighMean: null,
  clipRegionMean: null,
  clipLowMin: null,
  clipHighMax: null,
  kl: null,
  entropy: null,
  rolloutTokensPerSecond: null,
  rolloutSeconds: null,
  gradingSeconds: null,
  scoringSeconds: null,
} as const;

/** An SFT step as stored: the engine's step is one call, so its time is not split. */
export function sftStepRow(m: StepMetrics): RunStepMetrics {
  return {
    ...NO_GRPO,
    step: m.step,
    loss: m.loss,
    lr: m.lr,
    gradNorm: m.gradNorm,
    tokensPerSecond: m.tokensPerSecond,
    stepSeconds: m.seconds,
    epoch: m.epoch,
    tokens: m.tokens,
    targetTokens: m.targetTokens,
    forwardBackwardSeconds: null,
    forwardSeconds: null,
    backwardSeconds: null,
    optimizerSeconds: null,
  };
}

export function grpoStepRow(m: GrpoStepMetrics): RunStepMetrics {
  return {
    step: m.step,
    loss: m.loss,
    lr: m.lr,
    gradNorm: m.gradNorm,
    tokensPerSecond: m.trainTokensPerSecond,
    stepSeconds: m.seconds.total,
    epoch: null,
    tokens: null,
    targetTokens: null,
    rewardMean: m.reward.mean,
    rewardStd: m.reward.std,
    rewards: m.rewards,
    fracRewardZeroStd: m.fracRewardZeroStd,
    completionLengthMean: m.completionLength.mean,
    completionLengthMin: m.completionLength.min,
    completionLengthMax: m.completionLength.max,
    completionClippedShare: m.completionLength.clippedShare,
    clipLowMean: m.clipRatio.lowMean,
    clipHighMean: m.clipRatio.highMean,
    clipRegionMean: m.clipRatio.regionMean,
    clipLowMin: m.clipRatio.lowMin,
    clipHighMax: m.clipRatio.highMax,
    kl: m.kl,
    entropy: m.entropy,
    rolloutTokensPerSecond: m.rolloutTokensPerSecond,
    rolloutSeconds: m.seconds.rollout,
    gradingSeconds: m.seconds.grading,
    scoringSeconds: m.seconds.reference,
    forwardBackwardSeconds: m.seconds.policy,
    forwardSeconds: m.seconds.forward,
    backwardSeconds: m.seconds.backward,
    optimizerSeconds: m.seconds.optimizer,
  };
}

/** The first `groups` groups of G rollouts of a step (the prompt order is shuffled already). */
export function sampleRollouts(rollouts: readonly GrpoRollout[], G: number, groups: number): NewRunRollout[] {
  return rollouts.slice(0, groups * G).map((r, position) => ({
    position,
    prompt: r.prompt,
    completion: r.completion,
    completionIds: r.completionTokens,
    truncated: r.truncated,
    scores: r.scores,
    explanations: r.explanations,
    reward: r.reward,
    advantage: r.advantage,
    logprobs: r.logprobs,
  }));
}

export interface RecorderOptions {
  /** Continue the newest run of this kind in the same output folder, when there is one. */
  resume: boolean;
  /** A failed write (the training goes on). */
  warn(message: string): void;
}

export class RunRecorder {
  private constructor(
    private readonly db: Database,
    readonly runId: number,
    private readonly config: object,
    private readonly continuing: boolean,
    private readonly warn: (message: string) => void,
  ) {}

  /** The run's row: a new one, or with `resume` the newest run of the output folder (taken up at start()). */
  static begin(db: Database, run: NewRun, options: RecorderOptions): RunRecorder {
    const previous = options.resume ? latestRunIn(db, run.outDir, run.kind) : undefined;
    const id = previous?.id ?? createRun(db, run).id;
    return new RunRecorder(db, id, run.config, !!previous, options.warn);
  }

  get run(): Run {
    return getRun(this.db, this.runId)!;
  }

  private write(what: string, work: () => void): void {
    try {
      work();
    } catch (e) {
      this.warn(`could not record ${what} of run ${this.runId}: ${(e as Error).message}`);
    }
  }

  /** The loop's first step follows `step` (a resumed run's later steps are dropped: they run again). */
  start(step: number, totalSteps: number): void {
    this.write('the start', () => {
      if (this.continuing) restartRun(this.db, this.runId, step, this.config);
      setRunTotalSteps(this.db, this.runId, totalSteps);
    });
  }

  step(m: RunStepMetrics, rollouts: readonly NewRunRollout[] = []): void {
    this.write(`step ${m.step}`, () => recordRunStep(this.db, this.runId, m, rollouts));
  }

  paused(): void {
    this.write('the pause', () => setRunStatus(this.db, this.runId, 'paused'));
  }

  resumed(): void {
    this.write('the resume', () => setRunStatus(this.db, this.runId, 'running'));
  }

  end(status: 'done' | 'stopped' | 'failed', error: string | null = null): void {
    this.write('the end', () => setRunStatus(this.db, this.runId, status, error));
  }
}
