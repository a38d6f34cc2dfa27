// The policy's forward and its backward, timed apart (issue 6's step split: rollout, grading,
// scoring, backward, optimizer). forward_backward_s stays their sum; forward_s is the train-mode
// forward alone and backward_s the rest of that engine call (the lm head's log-probs and the
// backward). NULL for SFT steps and for steps recorded before this migration.
import type { Migration } from './index.ts';

export const stepBackward: Migration = {
  version: 5,
  name: 'step-backward',
  up(db) {
    db.exec(`
      ALTER TABLE run_metrics ADD COLUMN forward_s REAL CHECK (forward_s IS NULL OR forward_s >= 0);
      ALTER TABLE run_metrics ADD COLUMN backward_s REAL CHECK (backward_s IS NULL OR backward_s >= 0);
    `);
  },
};
