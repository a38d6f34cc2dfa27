// What the dataset screen and the CLI do with a stored dataset: preview, deduplicate, split into
// train and eval, export to JSONL. Listing, editing, tagging and deleting are the plain queries
// of db/datasets.ts.
import { closeSync, openSync, writeSync } from 'node:fs';
import type { Database } from '../../db/index.ts';
import {
  datasetCounts,
  deleteDuplicateItems,
  getDataset,
  itemIds,
  iterateItems,
  listItems,
  setItemSplits,
  type Dataset,
  type DatasetCounts,
  type DatasetItem,
  type ItemQuery,
  type Split,
} from '../../db/datasets.ts';
import { seededRng } from './random.ts';

export interface DatasetPreview {
  dataset: Dataset;
  /** The first items in position order. */
  items: DatasetItem[];
  counts: DatasetCounts;
}

export function previewDataset(db: Database, id: number, n = 10): DatasetPreview | undefined {
  const dataset = getDataset(db, id);
  if (!dataset) return undefined;
  return { dataset, items: listItems(db, id, { limit: n }).items, counts: datasetCounts(db, id) };
}

/**
 * Removes every item whose normalized prompt (NFKC, lower case, white space collapsed) an
 * earlier item already has, keeping the first by position.
 */
export function deduplicateDataset(db: Database, id: number, now = Date.now()): { removed: number; remaining: number } {
  const removed = deleteDuplicateItems(db, id, now);
  return { removed, remaining: datasetCounts(db, id).total };
}

export interface SplitOptions {
  /** Any integer; the same seed on the same items gives the same split. */
  seed: number;
  /** The share of items that go to eval, in [0, 1]. */
  evalFraction: number;
}

/**
 * Splits every item of a dataset into train and eval: the items in position order are shuffled
 * by Fisher–Yates with seededRng(seed), and the first round(n × evalFraction) of the shuffled
 * order go to eval, the rest to train. The split depends only on the seed, the fraction and the
 * items' order, so a re-imported export with the same seed splits the same way.
 */
export function splitDataset(db: Database, id: number, options: SplitOptions, now = Date.now()): { train: number; eval: number } {
  const { seed, evalFraction } = options;
  if (!(evalFraction >= 0 && evalFraction <= 1)) throw new Error(`the eval fraction is between 0 and 1, not ${evalFraction}`);
  if (!getDataset(db, id)) throw new Error(`no dataset ${id}`);
  const ids = seededRng(seed).shuffle(itemIds(db, id));
  const nEval = Math.round(ids.length * evalFraction);
  const splits = new Map<number, Split>(ids.map((itemId, k) => [itemId, k < nEval ? 'eval' : 'train']));
  setItemSplits(db, id, splits, now);
  return { train: ids.length - nEval, eval: nEval };
}

/**
 * An item as an export record, the import mapping reversed: prompt, answer (the reference),
 * solution, tests, system, tags, split, meta; empty fields are left out. The generic import
 * preset reads it back to the same item.
 */
export function exportRecord(item: DatasetItem): Record<string, unknown> {
  const r: Record<string, unknown> = { prompt: item.prompt };
  if (item.reference !== null) r.answer = item.reference;
  if (item.solution !== null) r.solution = item.solution;
  if (item.tests !== null) r.tests = item.tests;
  if (item.systemPrompt !== null) r.system = item.systemPrompt;
  if (item.tags.length > 0) r.tags = item.tags;
  if (item.split !== null) r.split = item.split;
  if (Object.keys(item.meta).length > 0) r.meta = item.meta;
  return r;
}

/** The dataset's items (those matching `q`) as JSONL lines, in position order. */
export function* exportJsonlLines(db: Database, id: number, q: Omit<ItemQuery, 'offset' | 'limit'> = {}): Generator<string> {
  for (const item of iterateItems(db, id, q)) yield JSON.stringify(exportRecord(item)) + '\n';
}

export function exportJsonl(db: Database, id: number, q: Omit<ItemQuery, 'offset' | 'limit'> = {}): string {
  return [...exportJsonlLines(db, id, q)].join('');
}

/** Writes the export to `path` in chunks (a large dataset is never one string); returns the number of items. */
export function writeJsonl(db: Database, id: number, path: string, q: Omit<ItemQuery, 'offset' | 'limit'> = {}): number {
  if (!getDataset(db, id)) throw new Error(`no dataset ${id}`);
  const fd = openSync(path, 'w');
  try {
    let n = 0;
    let chunk = '';
    for (const line of exportJsonlLines(db, id, q)) {
      chunk += line;
      n++;
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = '';
      }
    }
    if (chunk) writeSync(fd, chunk);
    return n;
  } finally {
    closeSync(fd);
  }
}
