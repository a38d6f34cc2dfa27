// The contract's dataset, grader and run channels over the data layer: imports, built-in
// generators, item editing, dedupe, split, export; grader configurations (named, versioned) and
// the grader playground; training runs with their metrics and rollouts, read-only. Thin on
// purpose: the logic lives in db/, services/datasets/ and services/graders/.
import { ApiError, type Handlers } from '../contract/api.ts';
import type { Database } from '../db/index.ts';
import * as ds from '../db/datasets.ts';
import { getGrader, listGraders, saveGrader } from '../db/graders.ts';
import { getRun, listRunMetrics, listRunRollouts, listRuns, type Run } from '../db/runs.ts';
import { importDatasetFile } from './datasets/import.ts';
import { generateDataset } from './datasets/generators.ts';
import { deduplicateDataset, splitDataset, writeJsonl } from './datasets/operations.ts';
import { GraderConfigError, parseGraderConfig } from './graders/config.ts';
import { runGrader } from './graders/playground.ts';
import { SandboxPool } from './graders/sandbox.ts';

type WorkbenchChannel = Extract<keyof Handlers, `datasets.${string}` | `graders.${string}` | `runs.${string}`>;

function dataset(db: Database, id: number): ds.Dataset {
  const d = ds.getDataset(db, id);
  if (!d) throw new ApiError('not_found', `no dataset ${id}`);
  return d;
}

function run(db: Database, id: number): Run {
  const r = getRun(db, id);
  if (!r) throw new ApiError('not_found', `no run ${id}`);
  return r;
}

const summary = (db: Database, d: ds.Dataset) => ({ ...d, counts: ds.datasetCounts(db, d.id) });

/** Errors of the data layer that are the request's fault come back as invalid_request. */
function asRequestError<T>(work: () => T): T {
  try {
    return work();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError('invalid_request', (e as Error).message);
  }
}

export function workbenchHandlers(db: Database): Pick<Handlers, WorkbenchChannel> {
  let pool: SandboxPool | null = null;
  return {
    'datasets.list': () => ds.listDatasets(db).map((d) => summary(db, d)),
    'datasets.import': (p) =>
      asRequestError(() => {
        if (p.name && ds.getDatasetByName(db, p.name)) throw new ApiError('conflict', `a dataset named "${p.name}" exists already`);
        return importDatasetFile(db, p.path, { name: p.name, preset: p.preset, format: p.format, mapping: p.mapping });
      }),
    'datasets.generate': (p) =>
      asRequestError(() => {
        if (p.name && ds.getDatasetByName(db, p.name)) throw new ApiError('conflict', `a dataset named "${p.name}" exists already`);
        return summary(db, generateDataset(db, { generator: p.generator, count: p.count, seed: p.seed }, p.name));
      }),
    'datasets.items': (p) => {
      dataset(db, p.id);
      return ds.listItems(db, p.id, { offset: p.offset, limit: p.limit, split: p.split, tag: p.tag });
    },
    'datasets.updateItem': (p) => {
      const { id, ...patch } = p;
      const item = asRequestError(() => ds.updateItem(db, id, patch));
      if (!item) throw new ApiError('not_found', `no dataset item ${id}`);
      return item;
    },
    'datasets.dedupe': (p) => (dataset(db, p.id), deduplicateDataset(db, p.id)),
    'datasets.split': (p) => (dataset(db, p.id), splitDataset(db, p.id, { seed: p.seed, evalFraction: p.evalFraction })),
    'datasets.export': (p) => {
      dataset(db, p.id);
      const written = asRequestError(() => writeJsonl(db, p.id, p.path));
      return { written, path: p.path };
    },
    'datasets.delete': (p) => {
      if (!ds.deleteDataset(db, p.id)) throw new ApiError('not_found', `no dataset ${p.id}`);
      return { ok: true as const };
    },
    'graders.list': () => listGraders(db),
    'graders.save': (p) => {
      try {
        // The version is the store's to give; any valid one will do for checking the rest.
        parseGraderConfig({ version: 1, ...p.config });
      } catch (e) {
        if (e instanceof GraderConfigError) throw new ApiError('invalid_request', e.message);
        throw e;
      }
      return asRequestError(() => saveGrader(db, p.config as Parameters<typeof saveGrader>[1]));
    },
    'graders.run': async (p) => {
      let config: unknown;
      if ('name' in p.grader) {
        const stored = getGrader(db, p.grader.name, p.grader.version);
        if (!stored) throw new ApiError('not_found', `no grader "${p.grader.name}"${p.grader.version ? ` version ${p.grader.version}` : ''}`);
        config = stored.config;
      } else config = { version: 1, ...p.grader.config }; // a pasted configuration needs no version
      pool ??= new SandboxPool();
      try {
        return await runGrader(config, p.items, { pool });
      } catch (e) {
        if (e instanceof GraderConfigError) throw new ApiError('invalid_request', e.message);
        throw e;
      }
    },
    'runs.list': () => listRuns(db),
    'runs.get': (p) => run(db, p.id),
    'runs.metrics': (p) => (run(db, p.id), listRunMetrics(db, p.id, p.afterStep)),
    'runs.rollouts': (p) => (run(db, p.id), listRunRollouts(db, p.id, { step: p.step, offset: p.offset, limit: p.limit })),
  };
}
