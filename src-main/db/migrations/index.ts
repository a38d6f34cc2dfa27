// Every schema migration, in order. A migration's version is its position (1, 2, ...); it runs
// once, in one transaction together with the user_version bump. Never edit a shipped one: add
// the next file (NNNN-name.ts) and list it here.
import type { Database } from '../index.ts';
import { initial } from './0001-initial.ts';
import { datasets } from './0002-datasets.ts';
import { runs } from './0003-runs.ts';
import { runOwner } from './0004-run-owner.ts';
import { stepBackward } from './0005-step-backward.ts';

export interface Migration {
  version: number;
  name: string;
  up(db: Database): void;
}

export const migrations: readonly Migration[] = [initial, datasets, runs, runOwner, stepBackward];
