// Importing datasets from JSONL, JSON and CSV files. A record becomes an item through a field
// mapping (which source field is the prompt, the reference answer, the tests...), taken from a
// preset and overridden field by field. A mapping entry is a path ("meta.answer", "cases.0") or a
// list of paths, the first present one winning. A record that cannot be read (bad JSON, a missing
// mapped field, an empty prompt, no final answer where the preset needs one) is reported with its
// line and reason; the others import, all in one transaction.
import { readFileSync } from 'node:fs';
import { basename, extname, resolve } from 'node:path';
import { z } from 'zod';
import type { Database } from '../../db/index.ts';
import { createDataset, getDataset, insertItems, ItemTests, type Dataset, type DatasetKind, type ItemMeta, type NewItem, type Split } from '../../db/datasets.ts';
import { parseCsv } from './csv.ts';

export type SourceFormat = 'jsonl' | 'json' | 'csv';

/**
 * generic: field names common across hubs; gsm8k: question + answer whose last `#### ` line is the
 * final answer; math: problem + solution whose last \boxed{} is the final answer (an `answer`
 * field wins when present); code: a prompt + tests (test code, assert lists, or input/output cases).
 */
export type Preset = 'generic' | 'gsm8k' | 'math' | 'code';

export const MAPPED_FIELDS = ['prompt', 'reference', 'solution', 'tests', 'system', 'tags', 'split', 'meta'] as const;
export type MappedField = (typeof MAPPED_FIELDS)[number];
export type FieldMapping = Partial<Record<MappedField, string | readonly string[]>>;

export interface RowError {
  /** 1-based line of the file where the record starts. */
  line: number;
  reason: string;
}

export interface SourceRecord {
  line: number;
  value: Record<string, unknown>;
}

const common: FieldMapping = {
  system: ['system', 'system_prompt'],
  tags: 'tags',
  split: 'split',
  meta: 'meta',
};

const testFields = ['tests', 'test', 'test_list', 'input_output', 'test_cases'];

const presets: Record<Preset, FieldMapping> = {
  generic: {
    ...common,
    prompt: ['prompt', 'question', 'problem', 'input', 'instruction', 'query'],
    reference: ['answer', 'reference', 'final_answer', 'expected_answer', 'target'],
    solution: ['solution', 'rationale', 'explanation'],
    tests: testFields,
  },
  gsm8k: { ...common, prompt: 'question', solution: 'answer' },
  math: { ...common, prompt: 'problem', solution: 'solution', reference: 'answer' },
  code: {
    ...common,
    prompt: ['prompt', 'question', 'problem', 'text', 'description'],
    solution: ['canonical_solution', 'solution', 'code'],
    tests: testFields,
  },
};

/** The preset's mapping with `overrides` replacing whole entries. */
export function presetMapping(preset: Preset, overrides: FieldMapping = {}): FieldMapping {
  return { ...presets[preset], ...overrides };
}

export const presetKind: Record<Preset, DatasetKind> = { generic: 'generic', gsm8k: 'math', math: 'math', code: 'code' };

// ---------------------------------------------------------------------------------------------
// Reading records

export function formatOfPath(path: string): SourceFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  if (ext === '.csv') return 'csv';
  throw new Error(`${basename(path)}: unknown dataset format (expected .jsonl, .json or .csv)`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The records of a file's text, each with its line. Records that cannot be read are errors; a JSON
 * file that does not parse, or holds no array of records, throws (nothing in it can be read).
 */
export function readRecords(text: string, format: SourceFormat): { records: SourceRecord[]; errors: RowError[] } {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (format === 'jsonl') return readJsonl(text);
  if (format === 'json') return readJson(text);
  return readCsv(text);
}

function readJsonl(text: string) {
  const records: SourceRecord[] = [];
  const errors: RowError[] = [];
  let line = 0;
  for (const raw of text.split('\n')) {
    line++;
    const s = raw.trim();
    if (s === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(s);
    } catch (e) {
      errors.push({ line, reason: `not JSON (${(e as Error).message})` });
      continue;
    }
    if (isObject(value)) records.push({ line, value });
    else errors.push({ line, reason: 'not a JSON object' });
  }
  return { records, errors };
}

function readJson(text: string) {
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch (e) {
    throw new Error(`not a JSON file (${(e as Error).message})`);
  }
  const key = Array.isArray(root) ? null : isObject(root) && Array.isArray(root.data) ? 'data' : isObject(root) && Array.isArray(root.rows) ? 'rows' : undefined;
  if (key === undefined) throw new Error('a JSON dataset is an array of records, or an object with a "data" or "rows" array');
  const rows = (key === null ? root : (root as Record<string, unknown>)[key]) as unknown[];
  const lines = elementLines(text, key);
  const records: SourceRecord[] = [];
  const errors: RowError[] = [];
  rows.forEach((value, k) => {
    if (isObject(value)) records.push({ line: lines[k], value });
    else errors.push({ line: lines[k], reason: 'not a JSON object' });
  });
  return { records, errors };
}

/**
 * The line each element of the records array starts on, in text already known to be valid JSON:
 * the top-level array (key null), or the array under a top-level key (the last one of that name,
 * as JSON.parse keeps).
 */
function elementLines(text: string, key: string | null): number[] {
  let i = 0;
  let line = 1;
  let counted = 0;
  const lineAt = (at: number) => {
    for (; counted < at; counted++) if (text[counted] === '\n') line++;
    return line;
  };
  const ws = () => {
    while (i < text.length && ' \t\r\n'.includes(text[i])) i++;
  };
  const skipString = () => {
    for (i++; text[i] !== '"'; i++) if (text[i] === '\\') i++;
    i++;
  };
  const skipValue = () => {
    if (text[i] === '"') return skipString();
    if (text[i] !== '{' && text[i] !== '[') {
      while (i < text.length && !',]} \t\r\n'.includes(text[i])) i++;
      return;
    }
    let depth = 0;
    do {
      if (text[i] === '"') {
        skipString();
        continue;
      }
      if (text[i] === '{' || text[i] === '[') depth++;
      else if (text[i] === '}' || text[i] === ']') depth--;
      i++;
    } while (depth > 0);
  };
  const arrayElements = () => {
    const lines: number[] = [];
    i++; // [
    for (ws(); text[i] !== ']'; ws()) {
      lines.push(lineAt(i));
      skipValue();
      ws();
      if (text[i] === ',') i++;
    }
    i++;
    return lines;
  };
  ws();
  if (key === null) return arrayElements();
  let found: number[] = [];
  i++; // {
  for (ws(); text[i] !== '}'; ws()) {
    const start = i;
    skipString();
    const name = JSON.parse(text.slice(start, i)) as string;
    ws();
    i++; // :
    ws();
    if (name === key && text[i] === '[') found = arrayElements();
    else skipValue();
    ws();
    if (text[i] === ',') i++;
  }
  return found;
}

function readCsv(text: string) {
  const { records: rows, errors } = parseCsv(text);
  const records: SourceRecord[] = [];
  const [header, ...body] = rows;
  if (!header) return { records, errors };
  const names = header.fields.map((f) => f.trim());
  for (const row of body) {
    if (row.fields.length !== names.length) {
      errors.push({ line: row.line, reason: `${row.fields.length} fields where the header has ${names.length}` });
      continue;
    }
    const value: Record<string, unknown> = {};
    names.forEach((name, k) => {
      if (!(name in value)) value[name] = row.fields[k];
    });
    records.push({ line: row.line, value });
  }
  return { records, errors };
}

// ---------------------------------------------------------------------------------------------
// Records to items

/** The value at `path`: a key as written, else dot-separated keys and array indexes. */
export function valueAt(record: unknown, path: string): unknown {
  if (isObject(record) && Object.hasOwn(record, path)) return record[path];
  let v: unknown = record;
  for (const part of path.split('.')) {
    if (Array.isArray(v) && /^\d+$/.test(part)) v = v[Number(part)];
    else if (isObject(v) && Object.hasOwn(v, part)) v = v[part];
    else return undefined;
  }
  return v;
}

const paths = (entry: string | readonly string[] | undefined): readonly string[] => (entry === undefined ? [] : typeof entry === 'string' ? [entry] : entry);

/** Thrown for a record that cannot become an item; the message is the reason reported. */
class RowProblem extends Error {}

function text(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw new RowProblem(`${what} is not text`);
}

/** The final answer of a GSM8K solution: what follows its last `####`, thousands commas dropped. */
export function gsm8kFinalAnswer(solution: string): { answer: string; steps: string } | undefined {
  const at = solution.lastIndexOf('####');
  if (at < 0) return undefined;
  const answer = solution
    .slice(at + 4)
    .trim()
    .replace(/(\d),(?=\d{3}(?!\d))/g, '$1');
  if (answer === '') return undefined;
  // The calculator annotations (<<48/2=24>>) are not part of the worked solution.
  const steps = solution.slice(0, at).replace(/<<[^<>]*>>/g, '').trim();
  return { answer, steps };
}

/** The contents of the last \boxed{…} (or \fbox{…}) in `s`, nested braces and escapes kept; `\boxed 5` too. */
export function lastBoxed(s: string): string | undefined {
  const at = Math.max(s.lastIndexOf('\\boxed'), s.lastIndexOf('\\fbox'));
  if (at < 0) return undefined;
  const from = at + (s.startsWith('\\boxed', at) ? 6 : 5);
  let i = from;
  while (s[i] === ' ') i++;
  if (s[i] !== '{') return i > from ? /^[^\s$]+/.exec(s.slice(i))?.[0] : undefined;
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    if (s[j] === '\\') j++;
    else if (s[j] === '{') depth++;
    else if (s[j] === '}' && --depth === 0) return s.slice(i + 1, j).trim();
  }
  return undefined;
}

const asCaseText = (v: unknown) => (typeof v === 'string' ? v : JSON.stringify(v));

/**
 * Code tests from the shapes datasets use: {tests, cases, language} as stored and exported; a
 * string of test code; a list of assert lines (MBPP), each its own test; input/output cases as
 * [{input, output}] or {inputs: [...], outputs: [...]} (APPS); any of these as JSON text.
 * `language` applies where the tests do not name one.
 */
export function toTests(value: unknown, language?: 'python' | 'javascript'): ItemTests | undefined {
  const found = testsOf(value);
  return found && language && !found.language ? { language, ...found } : found;
}

function testsOf(value: unknown): ItemTests | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value === 'string') {
    const s = value.trim();
    if (s === '') return undefined;
    if (s.startsWith('{') || s.startsWith('[')) {
      try {
        return testsOf(JSON.parse(s));
      } catch (e) {
        if (e instanceof RowProblem) throw e;
      }
    }
    return { tests: [value] };
  }
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((v) => typeof v === 'string')) return { tests: value };
    if (value.length > 0 && value.every((v) => isObject(v) && 'input' in v && ('output' in v || 'expected_output' in v)))
      return { cases: value.map((v) => ({ input: asCaseText(v.input), output: asCaseText(v.output ?? v.expected_output) })) };
  } else if (isObject(value)) {
    if ('tests' in value || 'cases' in value) {
      const parsed = ItemTests.safeParse(value);
      if (parsed.success) return parsed.data;
      throw new RowProblem(`invalid tests: ${z.prettifyError(parsed.error)}`);
    }
    const { inputs, outputs } = value;
    if (Array.isArray(inputs) && Array.isArray(outputs) && inputs.length === outputs.length && inputs.length > 0)
      return { cases: inputs.map((input, k) => ({ input: asCaseText(input), output: asCaseText(outputs[k]) })) };
  }
  throw new RowProblem('tests are neither test code nor input/output cases');
}

function toTags(value: unknown): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (typeof value === 'string') {
    const s = value.trim();
    if (s.startsWith('[')) {
      try {
        return toTags(JSON.parse(s));
      } catch (e) {
        if (e instanceof RowProblem) throw e;
      }
    }
    return s.split(',');
  }
  if (Array.isArray(value) && value.every((t) => typeof t === 'string')) return value;
  throw new RowProblem('tags are not a list of text');
}

function toSplit(value: unknown): Split | null {
  const s = text(value, 'split')?.trim().toLowerCase();
  if (!s) return null;
  if (s === 'train' || s === 'training') return 'train';
  if (['eval', 'test', 'validation', 'valid', 'val', 'dev'].includes(s)) return 'eval';
  throw new RowProblem(`unknown split "${s}" (train or eval)`);
}

const Meta = z.record(z.string(), z.json());

function toMeta(value: unknown): ItemMeta {
  if (value === undefined || value === null || value === '') return {};
  let v = value;
  if (typeof v === 'string') {
    try {
      v = JSON.parse(v);
    } catch {
      throw new RowProblem('meta is not a JSON object');
    }
  }
  const parsed = Meta.safeParse(v);
  if (!parsed.success) throw new RowProblem('meta is not a JSON object');
  return parsed.data;
}

/** A chat-style prompt ([{role, content}]): an optional system message and one user message. */
function chatPrompt(messages: unknown[]): { prompt: string; system?: string } {
  const turns = messages.map((m) => (isObject(m) && typeof m.role === 'string' && typeof m.content === 'string' ? { role: m.role, content: m.content } : undefined));
  if (turns.some((t) => t === undefined)) throw new RowProblem('prompt is a list but not of {role, content} messages');
  const system = turns.filter((t) => t!.role === 'system');
  const user = turns.filter((t) => t!.role === 'user');
  if (user.length !== 1 || system.length + user.length !== turns.length) throw new RowProblem('a chat prompt must hold one user message (and at most a system message)');
  return { prompt: user[0]!.content, system: system[0]?.content };
}

/** Fields that a record must have once the mapping names them; the others may be absent. */
const requiredWhenMapped = new Set<MappedField>(['reference', 'solution', 'tests']);

export interface MappingOptions {
  preset?: Preset;
  /** Entries replacing the preset's; a record without a named prompt, reference, solution or tests is an error. */
  mapping?: FieldMapping;
  /** The language of test code that does not say. */
  language?: 'python' | 'javascript';
}

/** A record as an item, or throws with the reason it cannot be one. */
export function recordToItem(record: Record<string, unknown>, options: MappingOptions = {}): NewItem {
  const preset = options.preset ?? 'generic';
  const mapping = presetMapping(preset, options.mapping);
  const explicit = new Set(Object.keys(options.mapping ?? {}));
  const field = (f: MappedField): unknown => {
    for (const p of paths(mapping[f])) {
      const v = valueAt(record, p);
      if (v !== undefined) return v;
    }
    if (f === 'prompt' || (explicit.has(f) && requiredWhenMapped.has(f))) throw new RowProblem(`no field ${paths(mapping[f]).map((p) => `"${p}"`).join(' or ') || `for the ${f}`}`);
    return undefined;
  };

  const rawPrompt = field('prompt');
  let system = text(field('system'), 'system prompt');
  let prompt: string | undefined;
  if (Array.isArray(rawPrompt)) {
    const chat = chatPrompt(rawPrompt);
    prompt = chat.prompt;
    system ??= chat.system;
  } else prompt = text(rawPrompt, 'prompt');
  if (!prompt || prompt.trim() === '') throw new RowProblem('empty prompt');

  const rawReference = field('reference');
  let reference = rawReference === undefined || rawReference === null ? undefined : typeof rawReference === 'object' ? JSON.stringify(rawReference) : text(rawReference, 'reference');
  let solution = text(field('solution'), 'solution');
  if (preset === 'gsm8k') {
    const final = solution === undefined ? undefined : gsm8kFinalAnswer(solution);
    if (!final) throw new RowProblem(solution === undefined ? 'no answer' : 'no "#### " final answer in the answer');
    reference = final.answer;
    solution = final.steps;
  } else if (preset === 'math' && (reference === undefined || reference.trim() === '')) {
    reference = solution === undefined ? undefined : lastBoxed(solution);
    if (reference === undefined) throw new RowProblem(solution === undefined ? 'no solution' : 'no \\boxed{} answer in the solution');
  }
  const tests = toTests(field('tests'), options.language);
  if (preset === 'code' && !tests) throw new RowProblem('no tests');

  const item: NewItem = { prompt, tags: toTags(field('tags')), split: toSplit(field('split')), meta: toMeta(field('meta')) };
  if (reference !== undefined && reference !== '') item.reference = reference;
  if (solution !== undefined && solution !== '') item.solution = solution;
  if (tests) item.tests = tests;
  if (system !== undefined && system !== '') item.systemPrompt = system;
  return item;
}

// ---------------------------------------------------------------------------------------------
// Importing

/** At most this many row errors are kept in a report; `errorCount` has them all. */
export const MAX_REPORTED_ERRORS = 1000;

export interface ParsedDataset {
  items: NewItem[];
  /** Records read, good and bad. */
  rows: number;
  errors: RowError[];
  errorCount: number;
}

/** Reads a file's text into items without storing anything (a dry run of an import). */
export function parseDataset(text: string, format: SourceFormat, options: MappingOptions = {}): ParsedDataset {
  const { records, errors: readErrors } = readRecords(text, format);
  const items: NewItem[] = [];
  const errors: RowError[] = [...readErrors];
  for (const r of records) {
    try {
      items.push(recordToItem(r.value, options));
    } catch (e) {
      if (!(e instanceof RowProblem)) throw e;
      errors.push({ line: r.line, reason: e.message });
    }
  }
  errors.sort((a, b) => a.line - b.line);
  return { items, rows: records.length + readErrors.length, errors: errors.slice(0, MAX_REPORTED_ERRORS), errorCount: errors.length };
}

export interface ImportOptions extends MappingOptions {
  /** A new dataset's name; by default the file's name without its extension. */
  name?: string;
  description?: string;
  /** By default the preset's: math for gsm8k and math, code for code, else generic. */
  kind?: DatasetKind;
  /** By default from the file's extension. */
  format?: SourceFormat;
  /** Append to this dataset instead of creating one. */
  into?: number;
}

export interface ImportReport extends Omit<ParsedDataset, 'items'> {
  /** The dataset the items went to; null when no record could be read (nothing was created). */
  dataset: Dataset | null;
  imported: number;
}

/** Imports a file's text; `source` is what the dataset records as its origin. */
export function importDatasetText(db: Database, text: string, source: string, options: ImportOptions & { format: SourceFormat }, now = Date.now()): ImportReport {
  const { items, ...report } = parseDataset(text, options.format, options);
  if (items.length === 0) return { ...report, dataset: options.into === undefined ? null : (getDataset(db, options.into) ?? null), imported: 0 };
  return db.transaction(() => {
    let dataset: Dataset;
    if (options.into !== undefined) {
      const found = getDataset(db, options.into);
      if (!found) throw new Error(`no dataset ${options.into}`);
      dataset = found;
    } else {
      const name = options.name ?? basename(source, extname(source));
      dataset = createDataset(db, { name, description: options.description, kind: options.kind ?? presetKind[options.preset ?? 'generic'], source }, now);
    }
    const imported = insertItems(db, dataset.id, items, now);
    return { ...report, dataset: getDataset(db, dataset.id)!, imported };
  })();
}

/** Imports a JSONL, JSON or CSV file (the format from its extension unless given). */
export function importDatasetFile(db: Database, path: string, options: ImportOptions = {}, now = Date.now()): ImportReport {
  const full = resolve(path);
  const format = options.format ?? formatOfPath(full);
  let text: string;
  try {
    text = readFileSync(full, 'utf8');
  } catch (e) {
    throw new Error(`${full}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return importDatasetText(db, text, full, { ...options, format }, now);
  } catch (e) {
    throw new Error(`${basename(full)}: ${(e as Error).message}`);
  }
}
