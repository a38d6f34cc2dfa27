// Training runs (SFT and GRPO), their metrics per optimizer step, and a sample of GRPO rollouts.
// A run is found again by its output folder when it is resumed (`--resume`): the same row goes on,
// with the steps after the checkpoint it resumes from deleted (they are trained again).
//
// Metrics are columns, one per scalar the viewer plots, so that a chart is a plain SELECT and
// STRICT types hold each value; a metric a run does not have is NULL (KL with beta 0, rewards in
// SFT, epochs in GRPO). Only the rewards per grader are JSON ({name: {mean, std}}): their keys are
// the run's grader names, which no fixed column can hold.
// Step times in seconds: rollout (sampling), grading, scoring (the log-probs of the reference,
// the adapter off: 0 with beta 0), forward_backward (the policy's forward and backward, one engine
// call), optimizer (clipping and AdamW), step (the whole step).
import type { Migration } from './index.ts';

export const runs: Migration = {
  version: 3,
  name: 'runs',
  up(db) {
    db.exec(`
      CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL CHECK (kind IN ('sft', 'grpo')),
        model TEXT NOT NULL,
        dataset TEXT NOT NULL,
        dataset_id INTEGER REFERENCES datasets (id) ON DELETE SET NULL,
        config TEXT NOT NULL CHECK (json_type(config) = 'object'),
        status TEXT NOT NULL CHECK (status IN ('running', 'paused', 'stopped', 'done', 'failed')),
        out_dir TEXT NOT NULL,
        total_steps INTEGER CHECK (total_steps >= 0),
        error TEXT CHECK (error IS NULL OR status = 'failed'),
        started_at INTEGER NOT NULL,
        ended_at INTEGER CHECK ((ended_at IS NULL) = (status IN ('running', 'paused')))
      ) STRICT;
      CREATE INDEX runs_started_at ON runs (started_at DESC);
      CREATE INDEX runs_out_dir ON runs (out_dir, kind, started_at DESC);
      CREATE INDEX runs_dataset_id ON runs (dataset_id);

      CREATE TABLE run_metrics (
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL CHECK (step >= 1),
        loss REAL NOT NULL,
        lr REAL NOT NULL,
        grad_norm REAL NOT NULL,
        tokens_per_s REAL NOT NULL,
        step_s REAL NOT NULL,
        epoch REAL,
        tokens INTEGER,
        target_tokens INTEGER,
        reward_mean REAL,
        reward_std REAL,
        rewards TEXT CHECK (rewards IS NULL OR json_type(rewards) = 'object'),
        frac_reward_zero_std REAL,
        completion_length_mean REAL,
        completion_length_min INTEGER,
        completion_length_max INTEGER,
        completion_clipped_share REAL,
        clip_low_mean REAL,
        clip_high_mean REAL,
        clip_region_mean REAL,
        clip_low_min REAL,
        clip_high_max REAL,
        kl REAL,
        entropy REAL,
        rollout_tokens_per_s REAL,
        rollout_s REAL,
        grading_s REAL,
        scoring_s REAL,
        forward_backward_s REAL,
        optimizer_s REAL,
        recorded_at INTEGER NOT NULL,
        PRIMARY KEY (run_id, step)
      ) STRICT, WITHOUT ROWID;

      -- position: the rollout's place in its step's batch (its group is position / G).
      CREATE TABLE run_rollouts (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        step INTEGER NOT NULL CHECK (step >= 1),
        position INTEGER NOT NULL CHECK (position >= 0),
        prompt TEXT NOT NULL,
        completion TEXT NOT NULL,
        completion_ids TEXT NOT NULL CHECK (json_type(completion_ids) = 'array'),
        truncated INTEGER NOT NULL CHECK (truncated IN (0, 1)),
        scores TEXT NOT NULL CHECK (json_type(scores) = 'object'),
        explanations TEXT NOT NULL CHECK (json_type(explanations) = 'object'),
        reward REAL NOT NULL,
        advantage REAL NOT NULL,
        logprobs TEXT NOT NULL CHECK (json_type(logprobs) = 'array')
      ) STRICT;
      CREATE UNIQUE INDEX run_rollouts_step ON run_rollouts (run_id, step, position);
    `);
  },
};
