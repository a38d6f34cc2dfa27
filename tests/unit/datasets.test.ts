// Datasets: migration 0002 over an existing database, import of each format and preset from the
// fixtures (broken rows reported by line, the rest imported), CSV edge cases, editing, tags,
// dedupe, seeded splits, export → re-import round trips, and the built-in generators checked by
// an exact evaluator written apart from theirs.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { defaultSampling } from '../../src-main/contract/api.ts';
import { createConversation, getConversation, insertMessage, listMessages } from '../../src-main/db/conversations.ts';
import {
  createDataset,
  datasetCounts,
  deleteDataset,
  deleteItems,
  getDataset,
  getItem,
  insertItems,
  listDatasets,
  listItems,
  promptHash,
  tagItems,
  untagItems,
  updateDataset,
  updateItem,
  type DatasetItem,
  type NewItem,
} from '../../src-main/db/datasets.ts';
import { migrate, openDatabase, type Database } from '../../src-main/db/index.ts';
import { migrations } from '../../src-main/db/migrations/index.ts';
import { parseCsv } from '../../src-main/services/datasets/csv.ts';
import { generateArithmetic, generateCountdown, generateDataset, generatorSource } from '../../src-main/services/datasets/generators.ts';
import {
  gsm8kFinalAnswer,
  importDatasetFile,
  importDatasetText,
  lastBoxed,
  parseDataset,
  recordToItem,
  toTests,
  valueAt,
} from '../../src-main/services/datasets/import.ts';
import { deduplicateDataset, exportJsonl, exportRecord, previewDataset, splitDataset, writeJsonl } from '../../src-main/services/datasets/operations.ts';
import { seededRng } from '../../src-main/services/datasets/random.ts';

const fixtures = join(import.meta.dirname, '..', 'fixtures', 'datasets');
const fixture = (name: string) => join(fixtures, name);
const dir = mkdtempSync(join(tmpdir(), 'aha-datasets-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The item fields an import or an export carries (not ids, positions, hashes, times). */
const content = (i: DatasetItem) => ({
  prompt: i.prompt,
  reference: i.reference,
  solution: i.solution,
  tests: i.tests,
  systemPrompt: i.systemPrompt,
  tags: i.tags,
  split: i.split,
  meta: i.meta,
});
const all = (db: Database, id: number) => listItems(db, id, { limit: 1_000_000 }).items;
const lines = (errors: Array<{ line: number }>) => errors.map((e) => e.line);

// ---------------------------------------------------------------------------------------------
// Migration

test('migration 0002 over a version-1 database keeps its conversations and adds strict tables with named indexes', () => {
  const file = join(dir, 'v1.db');
  const raw = new BetterSqlite3(file);
  migrate(raw, migrations.slice(0, 1));
  assert.equal(raw.pragma('user_version', { simple: true }), 1);
  raw.pragma('foreign_keys = ON');
  const c = createConversation(raw, { title: 'Before datasets', modelId: null, systemPrompt: 'sys', sampling: defaultSampling }, 100);
  const q = insertMessage(raw, { conversationId: c.id, parentId: null, role: 'user', content: 'hello', status: 'done', modelId: null }, 101);
  raw.close();

  const db = openDatabase(file);
  assert.equal(db.pragma('user_version', { simple: true }), migrations.length);
  assert.ok(migrations.length >= 2);
  assert.deepEqual(getConversation(db, c.id), c);
  assert.deepEqual(listMessages(db, c.id), [q]);
  const strict = db.prepare(`SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND name IN ('datasets', 'dataset_items', 'graders') ORDER BY name`).all();
  assert.deepEqual(strict, [
    { name: 'dataset_items', strict: 1 },
    { name: 'datasets', strict: 1 },
    { name: 'graders', strict: 1 },
  ]);
  const indexes = db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name IN ('datasets', 'dataset_items', 'graders') ORDER BY name`).pluck().all();
  assert.deepEqual(indexes, ['dataset_items_content_hash', 'dataset_items_position', 'dataset_items_split', 'datasets_name', 'datasets_updated_at', 'graders_name_version']);
  db.close();
});

test('the schema refuses a bad kind, split, empty prompt and non-array tags', () => {
  const db = openDatabase(':memory:');
  assert.throws(() => createDataset(db, { name: 'x', kind: 'poems' as never, source: 's' }), /CHECK constraint failed/);
  const d = createDataset(db, { name: 'x', kind: 'generic', source: 's' });
  const put = (split: string | null, prompt: string, tags: string) =>
    db
      .prepare(`INSERT INTO dataset_items (dataset_id, position, prompt, tags, split, meta, content_hash, created_at) VALUES (?, 0, ?, ?, ?, '{}', 'h', 0)`)
      .run(d.id, prompt, tags, split);
  assert.throws(() => put('test', 'p', '[]'), /CHECK constraint failed/);
  assert.throws(() => put(null, '  ', '[]'), /CHECK constraint failed/);
  assert.throws(() => put(null, 'p', '{"a":1}'), /CHECK constraint failed/);
  put('eval', 'p', '["a"]');
  db.close();
});

// ---------------------------------------------------------------------------------------------
// CSV

test('CSV: quotes, escaped quotes, delimiters and line breaks inside quotes, BOM, CRLF, LF and CR', () => {
  const { records, errors } = parseCsv('\ufeffa,b,c\r\n"x, y","say ""hi""",""\r\n"two\r\nlines",2,3\n4,,\r5,"6\n7",8');
  assert.deepEqual(errors, []);
  assert.deepEqual(records, [
    { line: 1, fields: ['a', 'b', 'c'] },
    { line: 2, fields: ['x, y', 'say "hi"', ''] },
    { line: 3, fields: ['two\r\nlines', '2', '3'] },
    { line: 5, fields: ['4', '', ''] },
    { line: 6, fields: ['5', '6\n7', '8'] },
  ]);
});

test('CSV: blank lines skipped, a trailing delimiter is an empty field, other delimiters, broken records by line', () => {
  assert.deepEqual(parseCsv('a;b\n\n1;"2;3"\n4;\n', ';').records, [
    { line: 1, fields: ['a', 'b'] },
    { line: 3, fields: ['1', '2;3'] },
    { line: 4, fields: ['4', ''] },
  ]);
  assert.deepEqual(parseCsv('a,b\n"x"y,1\n2,3\n"open\n,4').errors, [
    { line: 2, reason: 'text after the closing quote of field 1' },
    { line: 4, reason: 'a quoted field is not closed before the end of the file' },
  ]);
  assert.deepEqual(parseCsv('a,b\n"x"y,1\n2,3\n').records.map((r) => r.fields), [['a', 'b'], ['2', '3']]);
  assert.deepEqual(parseCsv('say,it\nhe said "no",x').records[1].fields, ['he said "no"', 'x'], 'a quote inside an unquoted field is text');
  assert.deepEqual(parseCsv(''), { records: [], errors: [] });
  assert.throws(() => parseCsv('a', '"'), /unusable CSV delimiter/);
});

test('CSV file: fields by header, broken rows reported by line, the rest imported', () => {
  const db = openDatabase(':memory:');
  const r = importDatasetFile(db, fixture('edge.csv'), {}, 1000);
  assert.deepEqual(r.errors, [
    { line: 7, reason: '2 fields where the header has 3' },
    { line: 8, reason: 'text after the closing quote of field 1' },
    { line: 10, reason: 'a quoted field is not closed before the end of the file' },
  ]);
  assert.equal(r.imported, 4);
  assert.equal(r.rows, 7);
  assert.equal(r.dataset?.name, 'edge');
  assert.equal(r.dataset?.kind, 'generic');
  assert.equal(r.dataset?.source, fixture('edge.csv'));
  assert.deepEqual(
    all(db, r.dataset!.id).map((i) => [i.prompt, i.reference, i.tags]),
    [
      ['What is 3, plus 4?', '7', ['easy', 'sum']],
      ['He said "hi" twice. How many words did he say?', '2', ['quotes']],
      ['A question\r\nover two lines?', '2', []],
      ['What is 10 - 1?', '9', ['easy']],
    ],
  );
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Formats and presets

test('GSM8K preset: the answer after "#### " is the reference, the steps the solution; bad lines reported', () => {
  const db = openDatabase(':memory:');
  const r = importDatasetFile(db, fixture('gsm8k.jsonl'), { preset: 'gsm8k', name: 'gsm8k sample' });
  assert.deepEqual(lines(r.errors), [4, 5, 6, 9]);
  assert.equal(r.errors[0].reason, 'no "#### " final answer in the answer');
  assert.match(r.errors[1].reason, /^not JSON \(/);
  assert.equal(r.errors[2].reason, 'empty prompt');
  assert.equal(r.errors[3].reason, 'not a JSON object');
  assert.equal(r.errorCount, 4);
  assert.equal(r.imported, 4);
  assert.equal(r.dataset?.kind, 'math');
  const items = all(db, r.dataset!.id);
  assert.deepEqual(
    items.map((i) => [i.reference, i.split]),
    [
      ['72', null],
      ['10', null],
      ['3600', null],
      ['3', 'eval'],
    ],
  );
  assert.equal(items[0].solution, 'Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether in April and May.');
  assert.equal(items[2].solution, '1200 * 3 = 3600');
  assert.deepEqual(
    items.map((i) => i.position),
    [0, 1, 2, 3],
  );
  assert.deepEqual(gsm8kFinalAnswer('x\n#### 1,234,567'), { answer: '1234567', steps: 'x' });
  assert.deepEqual(gsm8kFinalAnswer('a #### 1 #### -2.5'), { answer: '-2.5', steps: 'a #### 1' });
  assert.equal(gsm8kFinalAnswer('no marker'), undefined);
  assert.equal(gsm8kFinalAnswer('#### '), undefined);
  db.close();
});

test('MATH preset: the last \\boxed{} with nested and escaped braces, an answer field wins; JSON lines of each element', () => {
  const db = openDatabase(':memory:');
  const r = importDatasetFile(db, fixture('math.json'), { preset: 'math' });
  assert.deepEqual(r.errors, [
    { line: 18, reason: 'no \\boxed{} answer in the solution' },
    { line: 22, reason: 'not a JSON object' },
  ]);
  const items = all(db, r.dataset!.id);
  assert.deepEqual(
    items.map((i) => i.reference),
    ['\\frac{3}{4}', '\\{-1, 1\\}', '4', '{2^{2}}/{1} = 4'],
  );
  assert.match(items[0].solution!, /^We have/);
  assert.equal(lastBoxed('\\boxed{a} then \\fbox{b}'), 'b');
  assert.equal(lastBoxed('so \\boxed 5$'), '5');
  assert.equal(lastBoxed('\\boxed{x \\} y}'), 'x \\} y', 'an escaped brace does not close');
  assert.equal(lastBoxed('\\boxed  {\\text{(C)}}'), '\\text{(C)}');
  assert.equal(lastBoxed('\\boxed5'), undefined);
  assert.equal(lastBoxed('\\boxed{\\frac{1}{2}'), undefined, 'unbalanced');
  assert.equal(lastBoxed('no box'), undefined);
  db.close();
});

test('code preset: assert lists, test code, APPS input/output (as JSON text) and case lists; rows without tests reported', () => {
  const db = openDatabase(':memory:');
  const r = importDatasetFile(db, fixture('code.jsonl'), { preset: 'code', language: 'python' });
  assert.deepEqual(lines(r.errors), [5, 6]);
  assert.equal(r.errors[0].reason, 'no tests');
  assert.match(r.errors[1].reason, /^invalid tests: /);
  assert.equal(r.dataset?.kind, 'code');
  const items = all(db, r.dataset!.id);
  assert.deepEqual(items[0].tests, { language: 'python', tests: ['assert add(1, 2) == 3', 'assert add(-1, 1) == 0'] });
  assert.equal(items[0].solution, 'def add(a, b):\n    return a + b');
  assert.deepEqual(items[1].tests, { language: 'python', tests: ['def check(f):\n    assert f(2)\n    assert not f(3)\ncheck(is_even)\n'] });
  assert.deepEqual(items[2].tests, {
    language: 'python',
    cases: [
      { input: '1 2\n', output: '3\n' },
      { input: '5 7\n', output: '12\n' },
    ],
  });
  assert.deepEqual(items[3].tests, {
    language: 'python',
    cases: [
      { input: 'abc', output: 'cba' },
      { input: 'xy', output: 'yx' },
    ],
  });
  assert.deepEqual(toTests([{ input: [1, 2], expected_output: 3 }]), { cases: [{ input: '[1,2]', output: '3' }] });
  assert.deepEqual(toTests('{"language": "javascript", "tests": ["assert(f() === 1)"]}', 'python'), { language: 'javascript', tests: ['assert(f() === 1)'] });
  assert.throws(() => recordToItem({ prompt: 'p', tests: 42 }, { preset: 'code' }), /tests are neither test code nor input\/output cases/);
  db.close();
});

test('a field mapping with nested paths: a missing mapped reference and an empty prompt are reported', () => {
  const db = openDatabase(':memory:');
  const r = importDatasetFile(db, fixture('nested.json'), { mapping: { prompt: 'q.text', reference: 'meta.answer', system: 'sys' }, kind: 'chat' });
  assert.deepEqual(r.errors, [
    { line: 4, reason: 'no field "meta.answer"' },
    { line: 5, reason: 'empty prompt' },
    { line: 6, reason: 'no field "q.text"' },
  ]);
  assert.equal(r.dataset?.kind, 'chat');
  assert.deepEqual(all(db, r.dataset!.id).map(content), [
    { prompt: 'How many legs does a spider have?', reference: '8', solution: null, tests: null, systemPrompt: 'Answer with a number.', tags: [], split: null, meta: { answer: 8, topic: 'animals' } },
    { prompt: 'How many sides does a hexagon have?', reference: '6', solution: null, tests: null, systemPrompt: null, tags: [], split: null, meta: { answer: '6' } },
  ]);
  assert.equal(valueAt({ a: [{ b: 1 }] }, 'a.0.b'), 1);
  assert.equal(valueAt({ 'a.b': 2, a: { b: 3 } }, 'a.b'), 2, 'a key with a dot, as written, first');
  assert.equal(valueAt({ a: 1 }, 'a.b'), undefined);
  db.close();
});

test('JSON: a top-level array or a "rows" object; a file that does not parse or holds no records throws', () => {
  const rows = '{"rows": [\n {"prompt": "a"},\n\n {"prompt": ""}, {"prompt": "c", "x": "\\"]}"}\n]}';
  const parsed = parseDataset(rows, 'json');
  assert.deepEqual(parsed.items.map((i) => i.prompt), ['a', 'c']);
  assert.deepEqual(parsed.errors, [{ line: 4, reason: 'empty prompt' }]);
  assert.deepEqual(parseDataset('[{"question": "q1", "answer": 3}]', 'json').items, [{ prompt: 'q1', reference: '3', tags: [], split: null, meta: {} }]);
  assert.throws(() => parseDataset('[{"prompt": "a"},', 'json'), /^Error: not a JSON file/);
  assert.throws(() => parseDataset('{"items": []}', 'json'), /an array of records, or an object with a "data" or "rows" array/);
  const db = openDatabase(':memory:');
  assert.throws(() => importDatasetFile(db, join(dir, 'missing.jsonl')), /missing\.jsonl: cannot read \(ENOENT\)/);
  assert.throws(() => importDatasetFile(db, fixture('../make-tiny-models.ts')), /unknown dataset format/);
  db.close();
});

test('chat-style prompts, tags, splits and meta from records; bad ones reported', () => {
  const item = recordToItem({
    prompt: [
      { role: 'system', content: 'Think first.' },
      { role: 'user', content: 'What is 1+1?' },
    ],
    answer: 2,
    tags: '["a", " b ", "a"]',
    split: 'validation',
    meta: '{"k": [1]}',
  });
  assert.deepEqual(item, { prompt: 'What is 1+1?', systemPrompt: 'Think first.', reference: '2', tags: ['a', ' b ', 'a'], split: 'eval', meta: { k: [1] } });
  assert.throws(() => recordToItem({ prompt: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }] }), /one user message/);
  assert.throws(() => recordToItem({ prompt: 'p', split: 'holdout' }), /unknown split "holdout"/);
  assert.throws(() => recordToItem({ prompt: 'p', meta: [1] }), /meta is not a JSON object/);
  assert.throws(() => recordToItem({ prompt: { text: 'p' } }), /prompt is not text/);
  assert.throws(() => recordToItem({ prompt: 'p', tags: [1] }), /tags are not a list of text/);
});

test('importing appends to a dataset; nothing is stored when no row imports or the name is taken', () => {
  const db = openDatabase(':memory:');
  const first = importDatasetText(db, '{"prompt": "a"}\n{"prompt": "b"}\n', 'mem', { format: 'jsonl', name: 'd' });
  const more = importDatasetText(db, '{"prompt": "c"}\n', 'mem2', { format: 'jsonl', into: first.dataset!.id });
  assert.equal(more.dataset?.id, first.dataset?.id);
  assert.deepEqual(all(db, first.dataset!.id).map((i) => [i.prompt, i.position]), [
    ['a', 0],
    ['b', 1],
    ['c', 2],
  ]);
  const none = importDatasetText(db, '{"prompt": ""}\nnot json\n', 'mem', { format: 'jsonl', name: 'empty' });
  assert.equal(none.dataset, null);
  assert.equal(none.imported, 0);
  assert.deepEqual(lines(none.errors), [1, 2]);
  assert.equal(getDataset(db, 2), undefined);
  assert.throws(() => importDatasetText(db, '{"prompt": "x"}', 'mem', { format: 'jsonl', name: 'd' }), /a dataset named "d" already exists/);
  assert.throws(() => importDatasetText(db, '{"prompt": "x"}', 'mem', { format: 'jsonl', into: 99 }), /no dataset 99/);
  assert.equal(listDatasets(db).length, 1);
  assert.equal(datasetCounts(db, first.dataset!.id).total, 3);
  db.close();
});

test('a 100,000-row JSONL file imports in seconds', () => {
  const file = join(dir, 'big.jsonl');
  const rows: string[] = [];
  for (let k = 0; k < 100_000; k++) rows.push(JSON.stringify({ question: `What is ${k} + ${k % 97}?`, answer: String(k + (k % 97)), tags: ['big'] }));
  rows[41_999] = '{"question": oops}';
  writeFileSync(file, rows.join('\n') + '\n');
  const db = openDatabase(join(dir, 'big.db'));
  const t0 = performance.now();
  const r = importDatasetFile(db, file);
  const seconds = (performance.now() - t0) / 1000;
  assert.equal(r.imported, 99_999);
  assert.deepEqual(lines(r.errors), [42_000]);
  assert.ok(seconds < 15, `took ${seconds.toFixed(1)} s`);
  const page = listItems(db, r.dataset!.id, { offset: 50_000, limit: 2 });
  assert.equal(page.total, 99_999);
  assert.deepEqual(page.items.map((i) => i.prompt), ['What is 50001 + 46?', 'What is 50002 + 47?']);
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Operations

const sample: NewItem[] = [
  { prompt: 'What is 1 + 1?', reference: '2', tags: ['easy'] },
  { prompt: 'Name a prime above 10.', reference: '11', tags: ['primes', 'easy'] },
  { prompt: 'what  is 1 + 1?\n', reference: '2' },
  { prompt: 'Ｗhat is 1 + 1?', reference: 'two' },
  { prompt: 'Sum the list.', tests: { language: 'javascript', tests: ['assert(sum([1,2]) === 3)'] } },
];

function withSample(db: Database, name = 'sample'): number {
  const d = createDataset(db, { name, kind: 'generic', source: 'test' }, 10);
  insertItems(db, d.id, sample, 20);
  return d.id;
}

test('preview, counts, list pages filtered by split and tag', () => {
  const db = openDatabase(':memory:');
  const id = withSample(db);
  const p = previewDataset(db, id, 2)!;
  assert.equal(p.dataset.updatedAt, 20);
  assert.deepEqual(p.items.map((i) => i.prompt), ['What is 1 + 1?', 'Name a prime above 10.']);
  assert.deepEqual(p.counts, { total: 5, train: 0, eval: 0, unsplit: 5, tags: [{ tag: 'easy', count: 2 }, { tag: 'primes', count: 1 }] });
  assert.equal(previewDataset(db, 999), undefined);
  const ids = all(db, id).map((i) => i.id);
  updateItem(db, ids[1], { split: 'eval' });
  assert.deepEqual(listItems(db, id, { tag: 'easy' }).items.map((i) => i.id), [ids[0], ids[1]]);
  assert.deepEqual(listItems(db, id, { split: 'eval' }).items.map((i) => i.id), [ids[1]]);
  const page = listItems(db, id, { split: 'none', offset: 1, limit: 2 });
  assert.deepEqual(page.items.map((i) => i.id), [ids[2], ids[3]]);
  assert.equal(page.total, 4);
  db.close();
});

test('editing an item: a new prompt gets a new hash, null clears a field, bad values are refused', () => {
  const db = openDatabase(':memory:');
  const id = withSample(db);
  const [a] = all(db, id);
  assert.equal(a.contentHash, promptHash('What is 1 + 1?'));
  const e = updateItem(db, a.id, { prompt: 'What is 2 + 2?', reference: '4', solution: '2 + 2 = 4', systemPrompt: 'Be brief.' }, 500)!;
  assert.deepEqual(content(e), { ...content(a), prompt: 'What is 2 + 2?', reference: '4', solution: '2 + 2 = 4', systemPrompt: 'Be brief.' });
  assert.equal(e.contentHash, promptHash('What is 2 + 2?'));
  assert.notEqual(e.contentHash, a.contentHash);
  assert.equal(getDataset(db, id)?.updatedAt, 500);
  assert.equal(updateItem(db, a.id, { solution: null, tests: { cases: [{ input: '1', output: '1' }] } })?.solution, null);
  assert.deepEqual(getItem(db, a.id)?.tests, { cases: [{ input: '1', output: '1' }] });
  assert.throws(() => updateItem(db, a.id, { prompt: '  ' }), /an item needs a prompt/);
  assert.throws(() => updateItem(db, a.id, { tests: { cases: [] } }), /invalid tests/);
  assert.throws(() => updateItem(db, a.id, { tests: {} }), /invalid tests[^]*test code or input\/output cases/);
  assert.equal(getItem(db, a.id)?.prompt, 'What is 2 + 2?');
  assert.equal(updateItem(db, 999, { prompt: 'x' }), undefined);
  db.close();
});

test('tag and untag: counts of items changed, tags stay distinct', () => {
  const db = openDatabase(':memory:');
  const id = withSample(db);
  const ids = all(db, id).map((i) => i.id);
  assert.equal(tagItems(db, [ids[0], ids[2], 12345], 'review'), 2);
  assert.equal(tagItems(db, [ids[0], ids[2]], ' review '), 0, 'already tagged');
  assert.deepEqual(getItem(db, ids[0])?.tags, ['easy', 'review']);
  assert.deepEqual(listItems(db, id, { tag: 'review' }).items.map((i) => i.id), [ids[0], ids[2]]);
  assert.equal(untagItems(db, ids, 'easy'), 2);
  assert.deepEqual(getItem(db, ids[0])?.tags, ['review']);
  assert.deepEqual(getItem(db, ids[1])?.tags, ['primes']);
  assert.throws(() => tagItems(db, ids, ' '), /a tag cannot be empty/);
  db.close();
});

test('deduplicate by normalized prompt keeps the first of each and reports how many went', () => {
  const db = openDatabase(':memory:');
  const id = withSample(db);
  const other = withSample(db, 'other');
  assert.deepEqual(deduplicateDataset(db, id), { removed: 2, remaining: 3 });
  assert.deepEqual(all(db, id).map((i) => i.prompt), ['What is 1 + 1?', 'Name a prime above 10.', 'Sum the list.']);
  assert.deepEqual(deduplicateDataset(db, id), { removed: 0, remaining: 3 });
  assert.equal(datasetCounts(db, other).total, 5, 'another dataset with the same prompts is untouched');
  db.close();
});

test('split: the same seed gives the same split, the eval share is round(n × fraction), other seeds differ', () => {
  const db = openDatabase(':memory:');
  const d = createDataset(db, { name: 'split', kind: 'math', source: 't' });
  insertItems(db, d.id, generateArithmetic({ count: 200, seed: 3 }));
  const splitOf = () => all(db, d.id).map((i) => i.split);
  assert.deepEqual(splitDataset(db, d.id, { seed: 42, evalFraction: 0.1 }), { train: 180, eval: 20 });
  const first = splitOf();
  assert.equal(first.filter((s) => s === 'eval').length, 20);
  assert.ok(!first.includes(null));
  splitDataset(db, d.id, { seed: 7, evalFraction: 0.1 });
  const other = splitOf();
  assert.notDeepEqual(other, first);
  splitDataset(db, d.id, { seed: 42, evalFraction: 0.1 });
  assert.deepEqual(splitOf(), first);
  // The eval items are spread over the dataset, not its head.
  const evalPositions = all(db, d.id).filter((i) => i.split === 'eval').map((i) => i.position);
  assert.ok(evalPositions.some((p) => p >= 100) && evalPositions.some((p) => p < 100));
  assert.deepEqual(splitDataset(db, d.id, { seed: 1, evalFraction: 0.333 }), { train: 133, eval: 67 });
  assert.deepEqual(splitDataset(db, d.id, { seed: 1, evalFraction: 0 }), { train: 200, eval: 0 });
  assert.deepEqual(splitDataset(db, d.id, { seed: 1, evalFraction: 1 }), { train: 0, eval: 200 });
  assert.throws(() => splitDataset(db, d.id, { seed: 1, evalFraction: 1.5 }), /between 0 and 1/);
  assert.throws(() => splitDataset(db, d.id, { seed: 1.5, evalFraction: 0.5 }), /a seed is an integer/);
  assert.throws(() => splitDataset(db, 999, { seed: 1, evalFraction: 0.5 }), /no dataset 999/);
  db.close();
});

test('export to JSONL and import back gives the same items, splits and all', () => {
  const db = openDatabase(':memory:');
  const d = createDataset(db, { name: 'full', kind: 'generic', source: 't' });
  const items: NewItem[] = [
    ...sample,
    {
      prompt: 'Line one\nline "two" ünïcödé 🚀',
      reference: '{"a": 1}',
      solution: 'step\r\nstep',
      systemPrompt: 'sys',
      tags: ['x', 'y'],
      split: 'train',
      meta: { task: 'countdown', numbers: [1, 2], target: 3, nested: { ok: true, none: null } },
      tests: { language: 'python', tests: ['assert True'], cases: [{ input: 'a\n', output: '' }] },
    },
    { prompt: 'only a prompt' },
  ];
  insertItems(db, d.id, items);
  splitDataset(db, d.id, { seed: 5, evalFraction: 0.4 });
  const before = all(db, d.id);
  const text = exportJsonl(db, d.id);
  assert.equal(text.split('\n').length, before.length + 1);
  assert.deepEqual(JSON.parse(text.split('\n')[6]), { prompt: 'only a prompt', split: before[6].split });

  const again = importDatasetText(db, text, 'export', { format: 'jsonl', name: 'again' });
  assert.deepEqual(again.errors, []);
  assert.deepEqual(all(db, again.dataset!.id).map(content), before.map(content));

  const file = join(dir, 'export.jsonl');
  assert.equal(writeJsonl(db, d.id, file, { split: 'eval' }), 3);
  const evalOnly = importDatasetFile(db, file, { name: 'eval only' });
  assert.deepEqual(all(db, evalOnly.dataset!.id).map(content), before.filter((i) => i.split === 'eval').map(content));
  assert.equal(readFileSync(file, 'utf8'), exportJsonl(db, d.id, { split: 'eval' }));
  assert.deepEqual(exportRecord(before[0]), { prompt: 'What is 1 + 1?', answer: '2', tags: ['easy'], split: before[0].split });
  db.close();
});

test('renaming and deleting a dataset; deleting items and datasets removes their items', () => {
  const db = openDatabase(':memory:');
  const id = withSample(db);
  const keep = withSample(db, 'keep');
  assert.equal(updateDataset(db, id, { name: ' renamed ', description: 'd' }, 99)?.name, 'renamed');
  assert.throws(() => updateDataset(db, id, { name: 'keep' }), /a dataset named "keep" already exists/);
  assert.throws(() => createDataset(db, { name: '  ', kind: 'generic', source: 's' }), /a dataset needs a name/);
  const ids = all(db, id).map((i) => i.id);
  assert.equal(deleteItems(db, [ids[0], ids[0], 4242]), 1);
  assert.equal(datasetCounts(db, id).total, 4);
  assert.equal(deleteDataset(db, id), true);
  assert.equal(deleteDataset(db, id), false);
  assert.equal(getItem(db, ids[1]), undefined);
  assert.deepEqual(db.prepare('SELECT count(*) AS n FROM dataset_items').get(), { n: 5 });
  assert.equal(datasetCounts(db, keep).total, 5);
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Generators, checked by an exact evaluator of their own

interface Fraction {
  n: bigint;
  d: bigint;
}
const norm = (n: bigint, d: bigint): Fraction => {
  if (d === 0n) throw new Error('divide by zero');
  if (d < 0n) [n, d] = [-n, -d];
  let [a, b] = [n < 0n ? -n : n, d];
  while (b) [a, b] = [b, a % b];
  return { n: n / (a || 1n), d: d / (a || 1n) };
};

/** Evaluates + - * / ( ) over whole numbers exactly; returns the value and the numbers used. */
function evaluate(expr: string): { value: Fraction; numbers: number[] } {
  const tokens = expr.match(/\d+|[-+*/()]|\S/g) ?? [];
  let k = 0;
  const numbers: number[] = [];
  const atom = (): Fraction => {
    const t = tokens[k++];
    if (t === '(') {
      const v = sum();
      if (tokens[k++] !== ')') throw new Error(`missing ) in ${expr}`);
      return v;
    }
    if (!/^\d+$/.test(t ?? '')) throw new Error(`unexpected ${t} in ${expr}`);
    numbers.push(Number(t));
    return { n: BigInt(t), d: 1n };
  };
  const product = (): Fraction => {
    let v = atom();
    while (tokens[k] === '*' || tokens[k] === '/') {
      const op = tokens[k++];
      const r = atom();
      v = op === '*' ? norm(v.n * r.n, v.d * r.d) : norm(v.n * r.d, v.d * r.n);
    }
    return v;
  };
  const sum = (): Fraction => {
    let v = product();
    while (tokens[k] === '+' || tokens[k] === '-') {
      const op = tokens[k++];
      const r = product();
      v = norm(op === '+' ? v.n * r.d + r.n * v.d : v.n * r.d - r.n * v.d, v.d * r.d);
    }
    return v;
  };
  const value = sum();
  if (k !== tokens.length) throw new Error(`trailing ${tokens[k]} in ${expr}`);
  return { value, numbers };
}

/** Whether `used` takes each number at most as often as `given` has it. */
function usesEachAtMostOnce(used: number[], given: number[]): boolean {
  const left = new Map<number, number>();
  for (const g of given) left.set(g, (left.get(g) ?? 0) + 1);
  return used.every((u) => {
    const n = left.get(u) ?? 0;
    left.set(u, n - 1);
    return n > 0;
  });
}

test('the independent evaluator is exact and catches reused numbers', () => {
  assert.deepEqual(evaluate('(7 / 2) * 4 - 1').value, { n: 13n, d: 1n });
  assert.deepEqual(evaluate('1 / 3 + 1 / 6').value, { n: 1n, d: 2n });
  assert.deepEqual(evaluate('10 - (2 - 3)').value, { n: 11n, d: 1n });
  assert.deepEqual(evaluate('8 / 4 / 2').value, { n: 1n, d: 1n });
  assert.equal(usesEachAtMostOnce([5, 5], [5, 3]), false);
  assert.equal(usesEachAtMostOnce([5, 5], [5, 5, 3]), true);
  assert.throws(() => evaluate('1 + '), /unexpected/);
});

test('arithmetic problems: deterministic per seed, integer answers equal to their expression, every level and template', () => {
  const a = generateArithmetic({ count: 600, seed: 11 });
  assert.deepEqual(generateArithmetic({ count: 600, seed: 11 }), a);
  assert.notDeepEqual(generateArithmetic({ count: 600, seed: 12 }), a);
  const templates = new Set<unknown>();
  for (const item of a) {
    const answer = Number(item.reference);
    assert.ok(Number.isInteger(answer) && answer >= 1, `${item.prompt} → ${item.reference}`);
    const { value } = evaluate(item.meta!.expression as string);
    assert.deepEqual(value, { n: BigInt(answer), d: 1n }, item.prompt);
    assert.ok(item.solution!.endsWith(`The answer is ${answer}.`));
    assert.ok(item.tags!.includes(`difficulty-${item.meta!.difficulty}`));
    // Every number in the expression is stated in the problem.
    for (const n of evaluate(item.meta!.expression as string).numbers) assert.match(item.prompt, new RegExp(`\\b${n}\\b`), item.prompt);
    templates.add(item.meta!.template);
  }
  assert.equal(templates.size, 10);
  const easy = generateArithmetic({ count: 100, seed: 1, difficulties: [1] });
  assert.ok(easy.every((i) => i.meta!.difficulty === 1 && (i.meta!.expression as string).split(' ').length === 3));
  assert.throws(() => generateArithmetic({ count: 1, seed: 1, difficulties: [4 as never] }), /difficulties are 1, 2 or 3/);
  assert.throws(() => generateArithmetic({ count: -1, seed: 1 }), /a count is a whole number/);
});

test('countdown: deterministic per seed, and every item is solvable by its stored expression (exact, each number at most once)', () => {
  const a = generateCountdown({ count: 300, seed: 5 });
  assert.deepEqual(generateCountdown({ count: 300, seed: 5 }), a);
  assert.notDeepEqual(generateCountdown({ count: 300, seed: 6 }), a);
  let nonIntegerSteps = 0;
  for (const size of [2, 3, 4, 5, 6]) {
    const items = generateCountdown({ count: 400, seed: size, numbers: size, maxTarget: 500 });
    assert.equal(items.length, 400);
    for (const item of items) {
      const { numbers, target } = item.meta as { numbers: number[]; target: number };
      assert.equal(numbers.length, size);
      assert.ok(Number.isInteger(target) && target >= 1 && target <= 500);
      assert.ok(!numbers.includes(target), 'the target is not simply one of the numbers');
      assert.ok(item.prompt.includes(`[${numbers.join(', ')}]`) && item.prompt.includes(`equals ${target}`));
      assert.deepEqual(JSON.parse(item.reference!), { numbers, target });
      const expression = item.meta!.expression as string;
      assert.equal(item.solution, `${expression} = ${target}`);
      const { value, numbers: used } = evaluate(expression);
      assert.deepEqual(value, { n: BigInt(target), d: 1n }, `${expression} ≠ ${target}`);
      assert.ok(usesEachAtMostOnce(used, numbers), `${expression} over [${numbers}]`);
      assert.ok(used.length >= 2);
      if (expression.includes('/')) nonIntegerSteps++;
    }
  }
  assert.ok(nonIntegerSteps > 0, 'divisions occur');
  assert.throws(() => generateCountdown({ count: 1, seed: 1, numbers: 7 }), /2 to 6 numbers/);
});

test('a generated dataset is stored with its generator as source', () => {
  const db = openDatabase(':memory:');
  const d = generateDataset(db, { generator: 'countdown', count: 50, seed: 9, numbers: 3 });
  assert.equal(d.name, 'countdown-9');
  assert.equal(d.source, 'generator:countdown?count=50&seed=9&numbers=3');
  assert.deepEqual(all(db, d.id).map(content), generateCountdown({ count: 50, seed: 9, numbers: 3 }).map((i) => content({ reference: null, solution: null, tests: null, systemPrompt: null, tags: [], split: null, meta: {}, ...i } as DatasetItem)));
  const m = generateDataset(db, { generator: 'arithmetic', count: 20, seed: 1, difficulties: [2, 3] }, 'my problems');
  assert.equal(m.source, generatorSource({ generator: 'arithmetic', count: 20, seed: 1, difficulties: [2, 3] }));
  assert.equal(m.source, 'generator:arithmetic?count=20&seed=1&difficulties=2,3');
  assert.equal(datasetCounts(db, m.id).total, 20);
  assert.throws(() => generateDataset(db, { generator: 'arithmetic', count: 5, seed: 2 }, 'my problems'), /already exists/);
  assert.equal(listDatasets(db).length, 2);
  db.close();
});

test('the seeded generator repeats per seed and spreads its draws', () => {
  const draw = (seed: number) => {
    const r = seededRng(seed);
    return Array.from({ length: 100 }, () => r.next());
  };
  const r1 = seededRng(123);
  const r2 = seededRng(123);
  const xs = Array.from({ length: 1000 }, () => r1.int(0, 9));
  assert.deepEqual(Array.from({ length: 1000 }, () => r2.int(0, 9)), xs);
  for (let v = 0; v <= 9; v++) assert.ok(xs.filter((x) => x === v).length > 60, `value ${v} drawn too rarely`);
  assert.notDeepEqual(draw(1), draw(2));
  assert.deepEqual(seededRng(-1).next(), seededRng(2 ** 32 - 1).next(), 'seeds are taken modulo 2^32');
});
