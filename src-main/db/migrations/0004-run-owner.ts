// The process that trains a run (db/owner.ts): its pid, its host, and its start identity where
// the platform gives one (Linux: boot id and start time). A reader shows a run that is running or
// paused by a process that is gone as interrupted; the stored status stays as the trainer left it
// (a resumed run takes the row over with its own process). NULL for runs recorded before this
// migration: their process is not known, and they read as they were stored.
import type { Migration } from './index.ts';

export const runOwner: Migration = {
  version: 4,
  name: 'run-owner',
  up(db) {
    db.exec(`
      ALTER TABLE runs ADD COLUMN pid INTEGER CHECK (pid IS NULL OR pid > 0);
      ALTER TABLE runs ADD COLUMN host TEXT CHECK ((host IS NULL) = (pid IS NULL));
      ALTER TABLE runs ADD COLUMN process_start TEXT CHECK (process_start IS NULL OR pid IS NOT NULL);
    `);
  },
};
