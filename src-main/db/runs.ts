// Training runs, their metrics per step and their sampled rollouts (migrations 0003, 0004). A run
// is written by the process that trains (`aha train`, or the app) as it goes and read by the app.
// The row names that process (db/owner.ts); a run read as running or paused whose process is gone
// (killed outright, crashed) reads as 'interrupted', a status no writer stores.
import { z } from 'zod';
import type { Database } from './index.ts';
import { parseJsonOr } from './json.ts';
import { currentOwner, ownerAlive, type RunOwner } from './owner.ts';

export type RunKind = 'sft' | 'grpo';
/** As stored by the trainer. */
export type StoredRunStatus = 'running' | 'paused' | 'stopped' | 'done' | 'failed';
/** As read: 'interrupted' is a run left running or paused by a process that is gone. */
export type RunStatus = StoredRunStatus | 'interrupted';

export interface Run {
  id: number;
  kind: RunKind;
  /** The model's path. */
  model: string;
  /** The data file's path, or `dataset N "name"` for a dataset of the database. */
  dataset: string;
  /** The dataset of the database it trains on (null for a file, or once the dataset is deleted). */
  datasetId: number | null;
  /** The run's configuration as the trainer took it (hyperparameters, LoRA, graders). */
  config: Record<string, z.core.util.JSONType>;
  status: RunStatus;
  /** Where the adapter and the checkpoints are written. */
  outDir: string;
  totalSteps: number | null;
  /** The last step recorded (0 before the first). */
  step: number;
  /** Why the run failed, or what became of an interrupted run's trainer. */
  error: string | null;
  startedAt: number;
  /** When it stopped, ended or failed; for an interrupted run its last step's time (its last sign of life); null while running or paused. */
  endedAt: number | null;
  /** The trainer's process id and host (null for runs recorded before they were kept). */
  pid: number | null;
  host: string | null;
}

interface RunRow {
  id: number;
  kind: RunKind;
  model: string;
  dataset: string;
  dataset_id: number | null;
  config: string;
  status: StoredRunStatus;
  out_dir: string;
  total_steps: number | null;
  step: number;
  last_recorded_at: number | null;
  error: string | null;
  started_at: number;
  ended_at: number | null;
  pid: number | null;
  host: string | null;
  process_start: string | null;
}

const Config = z.record(z.string(), z.json());

/** Whether a run's trainer still runs (db/owner.ts); null when this machine cannot tell. Replaceable in tests. */
export type OwnerCheck = (owner: RunOwner) => boolean | null;

function toRun(r: RunRow, alive: OwnerCheck): Run {
  const run: Run = {
    id: r.id,
    kind: r.kind,
    model: r.model,
    dataset: r.dataset,
    datasetId: r.dataset_id,
    config: parseJsonOr(Config, {}, r.config),
    status: r.status,
    outDir: r.out_dir,
    totalSteps: r.total_steps,
    step: r.step,
    error: r.error,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    pid: r.pid,
    host: r.host,
  };
  if ((r.status === 'running' || r.status === 'paused') && r.pid !== null && r.host !== null && alive({ pid: r.pid, host: r.host, start: r.process_start }) === false) {
    run.status = 'interrupted';
    run.error = `the trainer process (pid ${r.pid}) is gone without recording an end, after step ${r.step}; continue it with the same command and --resume`;
    run.endedAt = r.last_recorded_at ?? r.started_at;
  }
  return run;
}

// The last step is read from the metrics (the primary key's index), never stored twice.
const SELECT_RUN =
  'SELECT r.*, coalesce((SELECT max(step) FROM run_metrics WHERE run_id = r.id), 0) AS step, (SELECT max(recorded_at) FROM run_metrics WHERE run_id = r.id) AS last_recorded_at FROM runs AS r';

/**
 * `config`: any JSON object (a trainer's configuration as it is). `owner`: the process that trains
 * it, this one unless given (null: not known).
 */
export type NewRun = Pick<Run, 'kind' | 'model' | 'dataset' | 'outDir'> & { config: object; owner?: RunOwner | null } & Partial<Pick<Run, 'datasetId' | 'totalSteps'>>;

/** A new run, status running, owned by `r.owner` (this process by default). */
export function createRun(db: Database, r: NewRun, now = Date.now()): Run {
  const owner = r.owner === undefined ? currentOwner() : r.owner;
  const { id } = db
    .prepare(
      `INSERT INTO runs (kind, model, dataset, dataset_id, config, status, out_dir, total_steps, error, started_at, ended_at, pid, host, process_start)
       VALUES (?, ?, ?, ?, ?, 'running', ?, ?, NULL, ?, NULL, ?, ?, ?) RETURNING id`,
    )
    .get(r.kind, r.model, r.dataset, r.datasetId ?? null, JSON.stringify(r.config), r.outDir, r.totalSteps ?? null, now, owner?.pid ?? null, owner?.host ?? null, owner?.start ?? null) as {
    id: number;
  };
  return getRun(db, id)!;
}

/** Readers take `alive` to tell whether a trainer still runs (default: ask this machine, db/owner.ts). */
export function getRun(db: Database, id: number, alive: OwnerCheck = ownerAlive): Run | undefined {
  const row = db.prepare(`${SELECT_RUN} WHERE r.id = ?`).get(id) as RunRow | undefined;
  return row && toRun(row, alive);
}

/** Newest first. */
export function listRuns(db: Database, alive: OwnerCheck = ownerAlive): Run[] {
  const rows = db.prepare(`${SELECT_RUN} ORDER BY r.started_at DESC, r.id DESC`).all() as RunRow[];
  return rows.map((r) => toRun(r, alive));
}

/** The newest run of this kind that writes to `outDir` (the one `--resume` continues). */
export function latestRunIn(db: Database, outDir: string, kind: RunKind, alive: OwnerCheck = ownerAlive): Run | undefined {
  const row = db.prepare(`${SELECT_RUN} WHERE r.out_dir = ? AND r.kind = ? ORDER BY r.started_at DESC, r.id DESC LIMIT 1`).get(outDir, kind) as RunRow | undefined;
  return row && toRun(row, alive);
}

/**
 * A run taken up again from the checkpoint of step `fromStep` by `owner` (this process unless
 * given): running, its steps after that one deleted (they are trained again), its configuration
 * replaced (a resumed run may change its length).
 */
export function restartRun(db: Database, id: number, fromStep: number, config: object, owner: RunOwner | null = currentOwner()): Run | undefined {
  return db.transaction(() => {
    const changed = db
      .prepare(`UPDATE runs SET status = 'running', error = NULL, ended_at = NULL, config = ?, pid = ?, host = ?, process_start = ? WHERE id = ?`)
      .run(JSON.stringify(config), owner?.pid ?? null, owner?.host ?? null, owner?.start ?? null, id).changes;
    if (!changed) return undefined;
    db.prepare('DELETE FROM run_metrics WHERE run_id = ? AND step > ?').run(id, fromStep);
    db.prepare('DELETE FROM run_rollouts WHERE run_id = ? AND step > ?').run(id, fromStep);
    return getRun(db, id);
  })();
}

export function setRunTotalSteps(db: Database, id: number, totalSteps: number): void {
  db.prepare('UPDATE runs SET total_steps = ? WHERE id = ?').run(totalSteps, id);
}

/** Moves a run to `status`; stopped, done and failed set its end time, `error` goes with failed. */
export function setRunStatus(db: Database, id: number, status: StoredRunStatus, error: string | null = null, now = Date.now()): void {
  const ended = status === 'running' || status === 'paused' ? null : now;
  db.prepare('UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ?').run(status, status === 'failed' ? error : null, ended, id);
}

/** Deletes a run with its metrics and rollouts. */
export function deleteRun(db: Database, id: number): boolean {
  return db.prepare('DELETE FROM runs WHERE id = ?').run(id).changes > 0;
}

// ---------------------------------------------------------------------------------------------
// Metrics per step

/** One optimizer step's metrics; null where the run's kind has no such metric. */
export interface RunStepMetrics {
  step: number;
  loss: number;
  lr: number;
  /** Before clipping. */
  gradNorm: number;
  /** Tokens through the train step (forward and backward) per second. */
  tokensPerSecond: number;
  stepSeconds: number;
  epoch: number | null;
  tokens: number | null;
  targetTokens: number | null;
  rewardMean: number | null;
  rewardStd: number | null;
  /** Per grader name: the mean and std of its unweighted scores. */
  rewards: Record<string, { mean: number; std: number }> | null;
  fracRewardZeroStd: number | null;
  completionLengthMean: number | null;
  completionLengthMin: number | null;
  completionLengthMax: number | null;
  completionClippedShare: number | null;
  clipLowMean: number | null;
  clipHighMean: number | null;
  clipRegionMean: number | null;
  clipLowMin: number | null;
  clipHighMax: number | null;
  kl: number | null;
  entropy: number | null;
  /** Sampled tokens per second of the rollout. */
  rolloutTokensPerSecond: number | null;
  rolloutSeconds: number | null;
  gradingSeconds: number | null;
  /** The reference's log-probs (the adapter off; 0 with beta 0). */
  scoringSeconds: number | null;
  /** The policy's forward and backward together (one engine call), and each of them apart. */
  forwardBackwardSeconds: number | null;
  forwardSeconds: number | null;
  backwardSeconds: number | null;
  optimizerSeconds: number | null;
}

type ScalarMetric = Exclude<keyof RunStepMetrics, 'step' | 'rewards'>;

// Each scalar metric and its column, in table order.
const METRIC_COLUMNS: readonly (readonly [ScalarMetric, string])[] = [
  ['loss', 'loss'],
  ['lr', 'lr'],
  ['gradNorm', 'grad_norm'],
  ['tokensPerSecond', 'tokens_per_s'],
  ['stepSeconds', 'step_s'],
  ['epoch', 'epoch'],
  ['tokens', 'tokens'],
  ['targetTokens', 'target_tokens'],
  ['rewardMean', 'reward_mean'],
  ['rewardStd', 'reward_std'],
  ['fracRewardZeroStd', 'frac_reward_zero_std'],
  ['completionLengthMean', 'completion_length_mean'],
  ['completionLengthMin', 'completion_length_min'],
  ['completionLengthMax', 'completion_length_max'],
  ['completionClippedShare', 'completion_clipped_share'],
  ['clipLowMean', 'clip_low_mean'],
  ['clipHighMean', 'clip_high_mean'],
  ['clipRegionMean', 'clip_region_mean'],
  ['clipLowMin', 'clip_low_min'],
  ['clipHighMax', 'clip_high_max'],
  ['kl', 'kl'],
  ['entropy', 'entropy'],
  ['rolloutTokensPerSecond', 'rollout_tokens_per_s'],
  ['rolloutSeconds', 'rollout_s'],
  ['gradingSeconds', 'grading_s'],
  ['scoringSeconds', 'scoring_s'],
  ['forwardBackwardSeconds', 'forward_backward_s'],
  ['forwardSeconds', 'forward_s'],
  ['backwardSeconds', 'backward_s'],
  ['optimizerSeconds', 'optimizer_s'],
];

const GraderRewards = z.record(z.string(), z.object({ mean: z.number(), std: z.number() })).nullable();

function toStep(r: Record<string, unknown>): RunStepMetrics {
  const m: Record<string, unknown> = { step: r.step, rewards: r.rewards === null ? null : parseJsonOr(GraderRewards, null, r.rewards as string) };
  for (const [key, column] of METRIC_COLUMNS) m[key] = r[column];
  return m as unknown as RunStepMetrics;
}

// ---------------------------------------------------------------------------------------------
// Rollouts

export interface RunRollout {
  id: number;
  runId: number;
  step: number;
  /** Its place in the step's batch: group position / G, member position % G. */
  position: number;
  prompt: string;
  /** The completion as sampled and graded, reasoning included. */
  completion: string;
  completionIds: number[];
  /** Stopped by the length limit, not an end-of-sequence token. */
  truncated: boolean;
  /** Each grader's unweighted score and explanation, by name. */
  scores: Record<string, number>;
  explanations: Record<string, string>;
  reward: number;
  advantage: number;
  /** The policy's log-prob of each completion token in the train step (empty when masked). */
  logprobs: number[];
}

export type NewRunRollout = Omit<RunRollout, 'id' | 'runId' | 'step'>;

interface RolloutRow {
  id: number;
  run_id: number;
  step: number;
  position: number;
  prompt: string;
  completion: string;
  completion_ids: string;
  truncated: 0 | 1;
  scores: string;
  explanations: string;
  reward: number;
  advantage: number;
  logprobs: string;
}

const Numbers = z.array(z.number());

const toRollout = (r: RolloutRow): RunRollout => ({
  id: r.id,
  runId: r.run_id,
  step: r.step,
  position: r.position,
  prompt: r.prompt,
  completion: r.completion,
  completionIds: parseJsonOr(Numbers, [], r.completion_ids),
  truncated: r.truncated === 1,
  scores: parseJsonOr(z.record(z.string(), z.number()), {}, r.scores),
  explanations: parseJsonOr(z.record(z.string(), z.string()), {}, r.explanations),
  reward: r.reward,
  advantage: r.advantage,
  logprobs: parseJsonOr(Numbers, [], r.logprobs),
});

// SQLite stores NaN as NULL; an infinite value would be kept, but nothing downstream wants one.
const finiteOrNull = (x: number | null) => (x !== null && Number.isFinite(x) ? x : null);

/**
 * A step's metrics and its sampled rollouts, in one transaction. A step recorded before (a run
 * resumed from an earlier checkpoint trains it again) is replaced.
 */
export function recordRunStep(db: Database, runId: number, m: RunStepMetrics, rollouts: readonly NewRunRollout[] = [], now = Date.now()): void {
  const columns = ['run_id', 'step', 'rewards', 'recorded_at', ...METRIC_COLUMNS.map(([, c]) => c)];
  const insertStep = db.prepare(`INSERT OR REPLACE INTO run_metrics (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`);
  const insertRollout = db.prepare(
    `INSERT INTO run_rollouts (run_id, step, position, prompt, completion, completion_ids, truncated, scores, explanations, reward, advantage, logprobs)
     VALUES (@run_id, @step, @position, @prompt, @completion, @completion_ids, @truncated, @scores, @explanations, @reward, @advantage, @logprobs)`,
  );
  db.transaction(() => {
    insertStep.run(runId, m.step, m.rewards === null ? null : JSON.stringify(m.rewards), now, ...METRIC_COLUMNS.map(([key]) => finiteOrNull(m[key])));
    db.prepare('DELETE FROM run_rollouts WHERE run_id = ? AND step = ?').run(runId, m.step);
    for (const r of rollouts)
      insertRollout.run({
        run_id: runId,
        step: m.step,
        position: r.position,
        prompt: r.prompt,
        completion: r.completion,
        completion_ids: JSON.stringify(r.completionIds),
        truncated: r.truncated ? 1 : 0,
        scores: JSON.stringify(r.scores),
        explanations: JSON.stringify(r.explanations),
        reward: r.reward,
        advantage: r.advantage,
        logprobs: JSON.stringify(r.logprobs),
      });
  })();
}

/** A run's metrics in step order, those after `afterStep` when given (a live chart's new points). */
export function listRunMetrics(db: Database, runId: number, afterStep = 0): RunStepMetrics[] {
  const rows = db.prepare('SELECT * FROM run_metrics WHERE run_id = ? AND step > ? ORDER BY step').all(runId, afterStep) as Record<string, unknown>[];
  return rows.map(toStep);
}

export interface RolloutQuery {
  /** One step's rollouts; all steps when absent. */
  step?: number;
  offset?: number;
  /** Default 50. */
  limit?: number;
}

/** One page of a run's rollouts in (step, position) order, and how many match in all. */
export function listRunRollouts(db: Database, runId: number, q: RolloutQuery = {}): { rollouts: RunRollout[]; total: number } {
  const where = q.step === undefined ? 'run_id = @runId' : 'run_id = @runId AND step = @step';
  const params = { runId, ...(q.step === undefined ? {} : { step: q.step }) };
  const limit = Math.max(0, Math.floor(q.limit ?? 50));
  const offset = Math.max(0, Math.floor(q.offset ?? 0));
  const rows = db.prepare(`SELECT * FROM run_rollouts WHERE ${where} ORDER BY step, position LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as RolloutRow[];
  const { n } = db.prepare(`SELECT count(*) AS n FROM run_rollouts WHERE ${where}`).get(params) as { n: number };
  return { rollouts: rows.map(toRollout), total: n };
}
