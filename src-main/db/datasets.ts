// Datasets and their items. Items keep their order in `position` (0, 1, ... in import order; gaps
// after deletions). Every write that changes an item also bumps its dataset's updated_at.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { Database } from './index.ts';
import { parseJsonOr } from './json.ts';

export const DATASET_KINDS = ['math', 'code', 'chat', 'generic'] as const;
export type DatasetKind = (typeof DATASET_KINDS)[number];
export type Split = 'train' | 'eval';

export interface Dataset {
  id: number;
  name: string;
  description: string;
  kind: DatasetKind;
  /** The imported file's path, or `generator:<name>?<parameters>`. */
  source: string;
  createdAt: number;
  updatedAt: number;
}

/**
 * An item's code tests, in the shape the code grader takes as its reference: test snippets, each
 * run after the answer's code in its own process (asserts), and/or stdin → stdout cases.
 */
export const ItemTests = z
  .object({
    language: z.enum(['python', 'javascript']).optional(),
    tests: z.array(z.string().min(1)).min(1).optional(),
    cases: z.array(z.object({ input: z.string(), output: z.string() }).strict()).min(1).optional(),
  })
  .strict()
  .refine((t) => t.tests !== undefined || t.cases !== undefined, 'tests hold test code or input/output cases');
export type ItemTests = z.infer<typeof ItemTests>;

/** Facts a checker needs beyond the reference text (a countdown's numbers and target). */
export type ItemMeta = Record<string, z.core.util.JSONType>;
const ItemMeta = z.record(z.string(), z.json());

export interface DatasetItem {
  id: number;
  datasetId: number;
  position: number;
  prompt: string;
  /** The answer a grader compares with. */
  reference: string | null;
  /** A worked solution (GSM8K's steps, MATH's solution), for SFT. */
  solution: string | null;
  tests: ItemTests | null;
  systemPrompt: string | null;
  /** Distinct, trimmed, in the order added. */
  tags: string[];
  split: Split | null;
  meta: ItemMeta;
  /** promptHash(prompt). */
  contentHash: string;
  createdAt: number;
}

export type NewItem = Pick<DatasetItem, 'prompt'> & Partial<Pick<DatasetItem, 'reference' | 'solution' | 'tests' | 'systemPrompt' | 'tags' | 'split' | 'meta'>>;

/** The prompt as compared for duplicates: Unicode NFKC, lower case, runs of white space as one space, trimmed. */
export function normalizePrompt(prompt: string): string {
  return prompt.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').trim();
}

/** The first 128 bits of the SHA-256 of the normalized prompt, in hex. */
export function promptHash(prompt: string): string {
  return createHash('sha256').update(normalizePrompt(prompt)).digest('hex').slice(0, 32);
}

/** Tags trimmed, empty ones dropped, each once, first occurrence first. */
export function normalizeTags(tags: readonly string[]): string[] {
  return [...new Set(tags.map((t) => t.trim()).filter((t) => t !== ''))];
}

// ---------------------------------------------------------------------------------------------
// Datasets

interface DatasetRow {
  id: number;
  name: string;
  description: string;
  kind: DatasetKind;
  source: string;
  created_at: number;
  updated_at: number;
}

const toDataset = (r: DatasetRow): Dataset => ({
  id: r.id,
  name: r.name,
  description: r.description,
  kind: r.kind,
  source: r.source,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export type NewDataset = Pick<Dataset, 'name' | 'kind' | 'source'> & Partial<Pick<Dataset, 'description'>>;

const isUniqueViolation = (e: unknown) => (e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';

function checkName(name: string): string {
  const trimmed = name.trim();
  if (trimmed === '') throw new Error('a dataset needs a name');
  return trimmed;
}

/** Creates an empty dataset; a name already taken is refused. */
export function createDataset(db: Database, d: NewDataset, now = Date.now()): Dataset {
  const name = checkName(d.name);
  try {
    const row = db
      .prepare('INSERT INTO datasets (name, description, kind, source, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING *')
      .get(name, d.description ?? '', d.kind, d.source, now, now) as DatasetRow;
    return toDataset(row);
  } catch (e) {
    if (isUniqueViolation(e)) throw new Error(`a dataset named "${name}" already exists`);
    throw e;
  }
}

export function getDataset(db: Database, id: number): Dataset | undefined {
  const row = db.prepare('SELECT * FROM datasets WHERE id = ?').get(id) as DatasetRow | undefined;
  return row && toDataset(row);
}

export function getDatasetByName(db: Database, name: string): Dataset | undefined {
  const row = db.prepare('SELECT * FROM datasets WHERE name = ?').get(name.trim()) as DatasetRow | undefined;
  return row && toDataset(row);
}

/** Most recently changed first. */
export function listDatasets(db: Database): Dataset[] {
  const rows = db.prepare('SELECT * FROM datasets ORDER BY updated_at DESC, id DESC').all() as DatasetRow[];
  return rows.map(toDataset);
}

export type DatasetUpdate = Partial<Pick<Dataset, 'name' | 'description' | 'kind'>>;

/** Renames, describes or re-kinds a dataset; undefined if there is none. A name already taken is refused. */
export function updateDataset(db: Database, id: number, patch: DatasetUpdate, now = Date.now()): Dataset | undefined {
  const current = getDataset(db, id);
  if (!current) return undefined;
  const next = {
    name: patch.name === undefined ? current.name : checkName(patch.name),
    description: patch.description ?? current.description,
    kind: patch.kind ?? current.kind,
  };
  try {
    const row = db
      .prepare('UPDATE datasets SET name = ?, description = ?, kind = ?, updated_at = ? WHERE id = ? RETURNING *')
      .get(next.name, next.description, next.kind, now, id) as DatasetRow;
    return toDataset(row);
  } catch (e) {
    if (isUniqueViolation(e)) throw new Error(`a dataset named "${next.name}" already exists`);
    throw e;
  }
}

/** Deletes a dataset and all its items. */
export function deleteDataset(db: Database, id: number): boolean {
  return db.prepare('DELETE FROM datasets WHERE id = ?').run(id).changes > 0;
}

function touchDataset(db: Database, id: number, now: number): void {
  db.prepare('UPDATE datasets SET updated_at = ? WHERE id = ?').run(now, id);
}

export interface DatasetCounts {
  total: number;
  train: number;
  eval: number;
  unsplit: number;
  /** Items per tag, most used first. */
  tags: Array<{ tag: string; count: number }>;
}

export function datasetCounts(db: Database, datasetId: number): DatasetCounts {
  const c = db
    .prepare(
      `SELECT count(*) AS total,
              coalesce(sum(split = 'train'), 0) AS train,
              coalesce(sum(split = 'eval'), 0) AS eval,
              coalesce(sum(split IS NULL), 0) AS unsplit
       FROM dataset_items WHERE dataset_id = ?`,
    )
    .get(datasetId) as Omit<DatasetCounts, 'tags'>;
  const tags = db
    .prepare(
      `SELECT t.value AS tag, count(*) AS count FROM dataset_items AS i, json_each(i.tags) AS t
       WHERE i.dataset_id = ? GROUP BY t.value ORDER BY count DESC, tag`,
    )
    .all(datasetId) as DatasetCounts['tags'];
  return { ...c, tags };
}

// ---------------------------------------------------------------------------------------------
// Items

interface ItemRow {
  id: number;
  dataset_id: number;
  position: number;
  prompt: string;
  reference: string | null;
  solution: string | null;
  tests: string | null;
  system_prompt: string | null;
  tags: string;
  split: Split | null;
  meta: string;
  content_hash: string;
  created_at: number;
}

const Tags = z.array(z.string());

function toItem(r: ItemRow): DatasetItem {
  return {
    id: r.id,
    datasetId: r.dataset_id,
    position: r.position,
    prompt: r.prompt,
    reference: r.reference,
    solution: r.solution,
    tests: r.tests === null ? null : parseJsonOr(ItemTests.nullable(), null, r.tests),
    systemPrompt: r.system_prompt,
    tags: parseJsonOr(Tags, [], r.tags),
    split: r.split,
    meta: parseJsonOr(ItemMeta, {}, r.meta),
    contentHash: r.content_hash,
    createdAt: r.created_at,
  };
}

/** An item's fields checked and put in column form; throws on an empty prompt or invalid tests. */
function itemColumns(item: NewItem) {
  if (item.prompt.trim() === '') throw new Error('an item needs a prompt');
  let tests: string | null = null;
  if (item.tests) {
    const parsed = ItemTests.safeParse(item.tests);
    if (!parsed.success) throw new Error(`invalid tests: ${z.prettifyError(parsed.error)}`);
    tests = JSON.stringify(parsed.data);
  }
  return {
    prompt: item.prompt,
    reference: item.reference ?? null,
    solution: item.solution ?? null,
    tests,
    system_prompt: item.systemPrompt ?? null,
    tags: JSON.stringify(normalizeTags(item.tags ?? [])),
    split: item.split ?? null,
    meta: JSON.stringify(item.meta ?? {}),
    content_hash: promptHash(item.prompt),
  };
}

/**
 * Appends items after the dataset's last position, in one transaction with one prepared
 * statement (a hundred thousand items take about a second). Returns how many were added.
 */
export function insertItems(db: Database, datasetId: number, items: Iterable<NewItem>, now = Date.now()): number {
  const insert = db.prepare(
    `INSERT INTO dataset_items (dataset_id, position, prompt, reference, solution, tests, system_prompt, tags, split, meta, content_hash, created_at)
     VALUES (@dataset_id, @position, @prompt, @reference, @solution, @tests, @system_prompt, @tags, @split, @meta, @content_hash, @created_at)`,
  );
  return db.transaction(() => {
    const last = db.prepare('SELECT max(position) AS p FROM dataset_items WHERE dataset_id = ?').get(datasetId) as { p: number | null };
    let position = (last.p ?? -1) + 1;
    let n = 0;
    for (const item of items) {
      insert.run({ ...itemColumns(item), dataset_id: datasetId, position: position++, created_at: now });
      n++;
    }
    touchDataset(db, datasetId, now);
    return n;
  })();
}

export function getItem(db: Database, id: number): DatasetItem | undefined {
  const row = db.prepare('SELECT * FROM dataset_items WHERE id = ?').get(id) as ItemRow | undefined;
  return row && toItem(row);
}

export interface ItemQuery {
  offset?: number;
  /** Default 50. */
  limit?: number;
  /** 'none' for items in neither split. */
  split?: Split | 'none';
  tag?: string;
}

function itemFilter(datasetId: number, q: ItemQuery): { where: string; params: Record<string, unknown> } {
  const conditions = ['dataset_id = @datasetId'];
  const params: Record<string, unknown> = { datasetId };
  if (q.split === 'none') conditions.push('split IS NULL');
  else if (q.split) {
    conditions.push('split = @split');
    params.split = q.split;
  }
  if (q.tag !== undefined) {
    conditions.push('EXISTS (SELECT 1 FROM json_each(tags) WHERE value = @tag)');
    params.tag = q.tag;
  }
  return { where: conditions.join(' AND '), params };
}

/** One page of a dataset's items in position order, and how many match in all. */
export function listItems(db: Database, datasetId: number, q: ItemQuery = {}): { items: DatasetItem[]; total: number } {
  const { where, params } = itemFilter(datasetId, q);
  const limit = Math.max(0, Math.floor(q.limit ?? 50));
  const offset = Math.max(0, Math.floor(q.offset ?? 0));
  const rows = db.prepare(`SELECT * FROM dataset_items WHERE ${where} ORDER BY position LIMIT @limit OFFSET @offset`).all({ ...params, limit, offset }) as ItemRow[];
  const { n } = db.prepare(`SELECT count(*) AS n FROM dataset_items WHERE ${where}`).get(params) as { n: number };
  return { items: rows.map(toItem), total: n };
}

/** Every item matching `q` (paging ignored) in position order, read one at a time. */
export function* iterateItems(db: Database, datasetId: number, q: Omit<ItemQuery, 'offset' | 'limit'> = {}): Generator<DatasetItem> {
  const { where, params } = itemFilter(datasetId, q);
  for (const row of db.prepare(`SELECT * FROM dataset_items WHERE ${where} ORDER BY position`).iterate(params)) yield toItem(row as ItemRow);
}

export type ItemUpdate = Partial<Omit<NewItem, 'tags'>> & { tags?: string[] };

/** Changes the given fields (null clears an optional one); a new prompt gets a new hash. Undefined if there is no such item. */
export function updateItem(db: Database, id: number, patch: ItemUpdate, now = Date.now()): DatasetItem | undefined {
  const current = getItem(db, id);
  if (!current) return undefined;
  const merged: NewItem = { ...current };
  for (const [key, value] of Object.entries(patch)) if (value !== undefined) (merged as unknown as Record<string, unknown>)[key] = value;
  const cols = itemColumns(merged);
  return db.transaction(() => {
    const row = db
      .prepare(
        `UPDATE dataset_items SET prompt = @prompt, reference = @reference, solution = @solution, tests = @tests,
           system_prompt = @system_prompt, tags = @tags, split = @split, meta = @meta, content_hash = @content_hash
         WHERE id = @id RETURNING *`,
      )
      .get({ ...cols, id }) as ItemRow;
    touchDataset(db, row.dataset_id, now);
    return toItem(row);
  })();
}

function retag(db: Database, ids: readonly number[], change: (tags: string[]) => string[], now: number): number {
  const read = db.prepare('SELECT dataset_id, tags FROM dataset_items WHERE id = ?');
  const write = db.prepare('UPDATE dataset_items SET tags = ? WHERE id = ?');
  return db.transaction(() => {
    let changed = 0;
    const touched = new Set<number>();
    for (const id of ids) {
      const row = read.get(id) as { dataset_id: number; tags: string } | undefined;
      if (!row) continue;
      const before = parseJsonOr(Tags, [], row.tags);
      const after = normalizeTags(change(before));
      if (after.length === before.length && after.every((t, i) => t === before[i])) continue;
      write.run(JSON.stringify(after), id);
      touched.add(row.dataset_id);
      changed++;
    }
    for (const d of touched) touchDataset(db, d, now);
    return changed;
  })();
}

/** Adds `tag` to the items; returns how many did not have it. */
export function tagItems(db: Database, ids: readonly number[], tag: string, now = Date.now()): number {
  if (tag.trim() === '') throw new Error('a tag cannot be empty');
  return retag(db, ids, (tags) => [...tags, tag], now);
}

/** Removes `tag` from the items; returns how many had it. */
export function untagItems(db: Database, ids: readonly number[], tag: string, now = Date.now()): number {
  return retag(db, ids, (tags) => tags.filter((t) => t !== tag.trim()), now);
}

/** Deletes the given items; returns how many there were. */
export function deleteItems(db: Database, ids: readonly number[], now = Date.now()): number {
  const read = db.prepare('SELECT dataset_id FROM dataset_items WHERE id = ?');
  const remove = db.prepare('DELETE FROM dataset_items WHERE id = ?');
  return db.transaction(() => {
    const touched = new Set<number>();
    let n = 0;
    for (const id of ids) {
      const row = read.get(id) as { dataset_id: number } | undefined;
      if (!row) continue;
      remove.run(id);
      touched.add(row.dataset_id);
      n++;
    }
    for (const d of touched) touchDataset(db, d, now);
    return n;
  })();
}

/** Deletes every item whose content hash an earlier item (by position) has; returns how many. */
export function deleteDuplicateItems(db: Database, datasetId: number, now = Date.now()): number {
  return db.transaction(() => {
    const n = db
      .prepare(
        `DELETE FROM dataset_items WHERE id IN (
           SELECT id FROM (
             SELECT id, row_number() OVER (PARTITION BY content_hash ORDER BY position) AS rank
             FROM dataset_items WHERE dataset_id = ?)
           WHERE rank > 1)`,
      )
      .run(datasetId).changes;
    if (n > 0) touchDataset(db, datasetId, now);
    return n;
  })();
}

/** The dataset's item ids in position order. */
export function itemIds(db: Database, datasetId: number): number[] {
  return db.prepare('SELECT id FROM dataset_items WHERE dataset_id = ? ORDER BY position').pluck().all(datasetId) as number[];
}

/** Puts each listed item in its split (null: neither), in one transaction. */
export function setItemSplits(db: Database, datasetId: number, splits: ReadonlyMap<number, Split | null>, now = Date.now()): void {
  const write = db.prepare('UPDATE dataset_items SET split = ? WHERE id = ? AND dataset_id = ?');
  db.transaction(() => {
    for (const [id, split] of splits) write.run(split, id, datasetId);
    touchDataset(db, datasetId, now);
  })();
}
