// The SQLite layer: migrations from an empty file, a newer database refused untouched, settings
// with corrupt values, conversation trees, foreign keys, crash recovery, reopening a file.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { defaultSampling, defaultSettings } from '../../src-main/contract/api.ts';
import { migrate, openDatabase, type Database } from '../../src-main/db/index.ts';
import { migrations } from '../../src-main/db/migrations/index.ts';
import {
  INTERRUPTED,
  createConversation,
  deleteConversation,
  getConversation,
  getMessage,
  insertMessage,
  listConversations,
  listMessages,
  messagePath,
  messageSiblings,
  recoverInterruptedMessages,
  updateConversation,
  updateMessage,
} from '../../src-main/db/conversations.ts';
import { getModel, getModelByPath, listModels, removeModel, setModelMissing, upsertModel, type ModelFacts } from '../../src-main/db/models.ts';
import { getSettings, setSettings } from '../../src-main/db/settings.ts';

const dir = mkdtempSync(join(tmpdir(), 'aha-db-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const facts = (path: string, name = 'tiny'): ModelFacts => ({
  path,
  name,
  format: 'gguf',
  architecture: 'qwen2',
  sizeBytes: 26_678_112,
  quantization: 'Q8_0',
  parameters: 19_597_120,
  contextLength: 32768,
  memoryEstimateBytes: 30_000_000,
});

const chat = (db: Database, modelId: number | null = null) =>
  createConversation(db, { title: 'New chat', modelId, systemPrompt: '', sampling: defaultSampling });

const user = (db: Database, conversationId: number, parentId: number | null, content: string) =>
  insertMessage(db, { conversationId, parentId, role: 'user', content, status: 'done', modelId: null });

const answer = (db: Database, conversationId: number, parentId: number, modelId: number | null = null) =>
  insertMessage(db, { conversationId, parentId, role: 'assistant', content: '', status: 'streaming', modelId });

const version = (db: Database) => db.pragma('user_version', { simple: true });
const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------------------------
// Opening and migrating

test('every migration runs from an empty file and leaves user_version at the last one', () => {
  const file = join(dir, 'fresh.db');
  const db = openDatabase(file);
  assert.equal(version(db), migrations.length);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  const tables = db.prepare(`SELECT name, strict FROM pragma_table_list WHERE schema = 'main' AND name NOT LIKE 'sqlite_%' ORDER BY name`).all();
  assert.deepEqual(tables, [
    { name: 'conversations', strict: 1 },
    { name: 'dataset_items', strict: 1 },
    { name: 'datasets', strict: 1 },
    { name: 'graders', strict: 1 },
    { name: 'messages', strict: 1 },
    { name: 'models', strict: 1 },
    { name: 'run_metrics', strict: 1 },
    { name: 'run_rollouts', strict: 1 },
    { name: 'runs', strict: 1 },
    { name: 'settings', strict: 1 },
  ]);
  const unnamed = db.prepare(`SELECT name FROM sqlite_schema WHERE type = 'index' AND name LIKE 'sqlite_autoindex%'`).all();
  assert.deepEqual(unnamed, [], 'every index has a name');
  db.close();
});

test('each migration moves user_version by one, and opening again runs none', () => {
  const db = new BetterSqlite3(':memory:');
  for (let i = 1; i <= migrations.length; i++) {
    migrate(db, migrations.slice(0, i));
    assert.equal(version(db), i);
  }
  migrate(db);
  assert.equal(version(db), migrations.length);
  db.close();
});

test('a failing migration rolls back together with its version bump', () => {
  const db = new BetterSqlite3(':memory:');
  const broken = {
    version: migrations.length + 1,
    name: 'broken',
    up: (d: Database) => d.exec('CREATE TABLE half (x INTEGER) STRICT; SELECT * FROM nowhere'),
  };
  assert.throws(() => migrate(db, [...migrations, broken]), /no such table: nowhere/);
  assert.equal(version(db), migrations.length);
  assert.equal(db.prepare(`SELECT name FROM sqlite_schema WHERE name = 'half'`).get(), undefined);
  db.close();
});

test('a migration list out of order is refused', () => {
  const db = new BetterSqlite3(':memory:');
  assert.throws(() => migrate(db, [{ ...migrations[0], version: 2 }]), /migration "initial" has version 2, expected 1/);
  assert.equal(version(db), 0);
  db.close();
});

test('a database from a newer Aha is refused and left byte-identical', () => {
  const file = join(dir, 'newer.db');
  const raw = new BetterSqlite3(file);
  raw.exec('CREATE TABLE future (x INTEGER)');
  raw.pragma(`user_version = ${migrations.length + 5}`);
  raw.close();
  const before = readFileSync(file);
  assert.throws(
    () => openDatabase(file),
    new Error(`${file} was written by a newer version of Aha (schema ${migrations.length + 5}, this app knows ${migrations.length}); update Aha or move the file away`),
  );
  assert.deepEqual(readFileSync(file), before);
});

test('a file that is not a database is refused with its name and left alone', () => {
  const file = join(dir, 'junk.db');
  const text = 'this is not sqlite\n'.repeat(100);
  writeFileSync(file, text);
  assert.throws(() => openDatabase(file), { message: new RegExp(`^${escape(file)}: not an Aha database \\(file is not a database\\)$`) });
  assert.equal(readFileSync(file, 'utf8'), text);
});

test('a file-backed database keeps its data when reopened', () => {
  const file = join(dir, 'reopen.db');
  let db = openDatabase(file);
  const m = upsertModel(db, facts('/models/a.gguf'), 'added');
  const c = chat(db, m.id);
  const u = user(db, c.id, null, 'hello');
  setSettings(db, { threads: 6 });
  db.close();
  db = openDatabase(file);
  assert.equal(version(db), migrations.length);
  assert.deepEqual(getModel(db, m.id), m);
  assert.deepEqual(getConversation(db, c.id), c);
  assert.deepEqual(getMessage(db, u.id), u);
  assert.equal(getSettings(db).threads, 6);
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Settings

test('settings start at the defaults and round-trip', () => {
  const db = openDatabase(':memory:');
  assert.deepEqual(getSettings(db), defaultSettings);
  const sampling = { ...defaultSampling, temperature: 0.2, seed: 7 };
  const s = setSettings(db, { threads: 8, sampling, theme: 'dark' });
  assert.deepEqual(s, { ...defaultSettings, threads: 8, sampling, theme: 'dark' });
  assert.deepEqual(getSettings(db), s);
  assert.deepEqual(setSettings(db, { contextLength: 8192, threads: undefined }), { ...s, contextLength: 8192 });
  db.close();
});

test('invalid settings are refused and nothing is stored', () => {
  const db = openDatabase(':memory:');
  assert.throws(() => setSettings(db, { threads: 2, contextLength: 5 }), /invalid settings: [^]*contextLength/);
  assert.throws(() => setSettings(db, { volume: 11 } as never), /invalid settings/);
  assert.deepEqual(getSettings(db), defaultSettings);
  db.close();
});

test('a corrupt stored setting falls back to its default, the others stay', () => {
  const db = openDatabase(':memory:');
  setSettings(db, { threads: 4, systemPrompt: 'Be brief.' });
  const put = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  put.run('theme', '"purple"');
  put.run('contextLength', '"long"');
  put.run('sampling', JSON.stringify({ ...defaultSampling, temperature: 99, topK: 40, futureKnob: 1 }));
  put.run('removedSetting', '1');
  assert.deepEqual(getSettings(db), {
    ...defaultSettings,
    threads: 4,
    systemPrompt: 'Be brief.',
    sampling: { ...defaultSampling, topK: 40 },
  });
  put.run('sampling', '[1, 2]');
  assert.deepEqual(getSettings(db).sampling, defaultSampling);
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Models

test('models: upsert by path keeps id, source and time added; list, missing, remove', () => {
  const db = openDatabase(':memory:');
  const a = upsertModel(db, facts('/m/a.gguf', 'beta'), 'lmstudio', 1000);
  const b = upsertModel(db, facts('/m/b.gguf', 'Alpha'), 'added', 2000);
  assert.deepEqual(a, { ...facts('/m/a.gguf', 'beta'), id: a.id, source: 'lmstudio', missing: false, addedAt: 1000 });
  assert.deepEqual(listModels(db).map((m) => m.name), ['Alpha', 'beta']);
  setModelMissing(db, a.id, true);
  assert.equal(getModel(db, a.id)?.missing, true);
  const again = upsertModel(db, { ...facts('/m/a.gguf', 'beta'), sizeBytes: 5 }, 'added', 3000);
  assert.deepEqual(again, { ...a, sizeBytes: 5 });
  assert.deepEqual(getModelByPath(db, '/m/b.gguf'), b);
  assert.equal(removeModel(db, b.id), true);
  assert.equal(removeModel(db, b.id), false);
  assert.equal(getModel(db, b.id), undefined);
  db.close();
});

test('removing a model leaves its conversations and messages with no model', () => {
  const db = openDatabase(':memory:');
  const m = upsertModel(db, facts('/m/a.gguf'), 'added');
  const c = chat(db, m.id);
  const a = answer(db, c.id, user(db, c.id, null, 'hi').id, m.id);
  removeModel(db, m.id);
  assert.equal(getConversation(db, c.id)?.modelId, null);
  assert.equal(getMessage(db, a.id)?.modelId, null);
  db.close();
});

// ---------------------------------------------------------------------------------------------
// Conversations and messages

test('conversations: create, update, list newest first', () => {
  const db = openDatabase(':memory:');
  const c1 = createConversation(db, { title: 'First', modelId: null, systemPrompt: 'sys', sampling: defaultSampling }, 100);
  const c2 = createConversation(db, { title: 'Second', modelId: null, systemPrompt: '', sampling: defaultSampling }, 200);
  assert.deepEqual(c1, { id: c1.id, title: 'First', modelId: null, systemPrompt: 'sys', sampling: defaultSampling, leafId: null, createdAt: 100, updatedAt: 100 });
  assert.deepEqual(listConversations(db).map((c) => c.id), [c2.id, c1.id]);
  const sampling = { ...defaultSampling, temperature: 0 };
  const u = updateConversation(db, c1.id, { title: 'Renamed', sampling }, 300);
  assert.deepEqual(u, { ...c1, title: 'Renamed', sampling, updatedAt: 300 });
  assert.deepEqual(listConversations(db).map((c) => c.id), [c1.id, c2.id]);
  assert.equal(updateConversation(db, 999, { title: 'x' }), undefined);
  db.close();
});

test('a corrupt stored sampling falls back to the defaults field by field', () => {
  const db = openDatabase(':memory:');
  const c = chat(db);
  db.prepare('UPDATE conversations SET sampling = ? WHERE id = ?').run(JSON.stringify({ temperature: 0.3, topP: -1 }), c.id);
  assert.deepEqual(getConversation(db, c.id)?.sampling, { ...defaultSampling, temperature: 0.3 });
  db.close();
});

test('messages form a tree: branches under one parent, the path to a leaf, siblings', () => {
  const db = openDatabase(':memory:');
  const c = chat(db);
  const q1 = user(db, c.id, null, 'What is 2+2?');
  const a1 = answer(db, c.id, q1.id);
  const a1b = answer(db, c.id, q1.id); // regenerated
  const q2 = user(db, c.id, a1b.id, 'And 3+3?');
  const q2b = user(db, c.id, a1b.id, 'And 4+4?'); // edited and resent
  const a2 = answer(db, c.id, q2b.id);
  const q1b = user(db, c.id, null, 'What is 2+3?'); // the first message edited

  assert.deepEqual(messagePath(db, a2.id).map((m) => m.id), [q1.id, a1b.id, q2b.id, a2.id]);
  assert.deepEqual(messagePath(db, a1.id).map((m) => m.id), [q1.id, a1.id]);
  assert.deepEqual(messagePath(db, 12345), []);
  assert.deepEqual(messageSiblings(db, a1.id).map((m) => m.id), [a1.id, a1b.id]);
  assert.deepEqual(messageSiblings(db, q2.id).map((m) => m.id), [q2.id, q2b.id]);
  assert.deepEqual(messageSiblings(db, q1b.id).map((m) => m.id), [q1.id, q1b.id]);
  assert.deepEqual(messageSiblings(db, a2.id).map((m) => m.id), [a2.id]);
  assert.equal(listMessages(db, c.id).length, 7);

  const other = chat(db);
  user(db, other.id, null, 'elsewhere');
  assert.deepEqual(messageSiblings(db, q1.id).map((m) => m.id), [q1.id, q1b.id], 'roots of another conversation are not siblings');
  assert.throws(() => user(db, other.id, a2.id, 'a parent from another conversation'), /FOREIGN KEY constraint failed/);
  db.close();
});

test('streaming text, status and stats are written; reasoning is kept apart from the answer', () => {
  const db = openDatabase(':memory:');
  const c = chat(db);
  const a = answer(db, c.id, user(db, c.id, null, 'hi').id);
  assert.equal(a.status, 'streaming');
  updateMessage(db, a.id, { reasoning: 'The user greets', completionTokens: 3, reasoningTokens: 3 });
  const done = updateMessage(db, a.id, {
    reasoning: 'The user greets me.',
    content: 'Hello!',
    status: 'done',
    promptTokens: 12,
    completionTokens: 9,
    reasoningTokens: 6,
    reasoningMs: 812.5,
    totalMs: 1200,
  });
  assert.deepEqual(done, {
    ...a,
    reasoning: 'The user greets me.',
    content: 'Hello!',
    status: 'done',
    promptTokens: 12,
    completionTokens: 9,
    reasoningTokens: 6,
    reasoningMs: 812.5,
    totalMs: 1200,
  });
  assert.deepEqual(getMessage(db, a.id), done);
  assert.equal(updateMessage(db, 999, { content: 'x' }), undefined);
  assert.throws(() => updateMessage(db, a.id, { status: 'paused' as never }), /CHECK constraint failed/);
  db.close();
});

test('deleting a conversation deletes its messages; deleting a message deletes its branch', () => {
  const db = openDatabase(':memory:');
  const c = chat(db);
  const keep = chat(db);
  const kept = user(db, keep.id, null, 'stay');
  const q = user(db, c.id, null, 'q');
  const a = answer(db, c.id, q.id);
  updateConversation(db, c.id, { leafId: a.id });
  const q2 = user(db, c.id, a.id, 'q2');
  answer(db, c.id, q2.id);

  db.prepare('DELETE FROM messages WHERE id = ?').run(a.id);
  assert.deepEqual(listMessages(db, c.id).map((m) => m.id), [q.id]);
  assert.equal(getConversation(db, c.id)?.leafId, null, 'the leaf pointer is cleared with its message');

  assert.equal(deleteConversation(db, c.id), true);
  assert.equal(getConversation(db, c.id), undefined);
  assert.deepEqual(listMessages(db, c.id), []);
  assert.deepEqual(db.prepare('SELECT count(*) AS n FROM messages').get(), { n: 1 });
  assert.deepEqual(getMessage(db, kept.id), kept);
  assert.equal(deleteConversation(db, c.id), false);
  db.close();
});

test('answers left streaming by a crash become errors and keep their text', () => {
  const file = join(dir, 'crash.db');
  let db = openDatabase(file);
  const c = chat(db);
  const q = user(db, c.id, null, 'Prove it.');
  const a = answer(db, c.id, q.id);
  updateMessage(db, a.id, { reasoning: 'First, note that', content: '', completionTokens: 4 });
  const finished = answer(db, c.id, q.id);
  updateMessage(db, finished.id, { content: 'Done.', status: 'done' });
  db.close(); // the app dies here

  db = openDatabase(file);
  assert.equal(recoverInterruptedMessages(db), 1);
  assert.deepEqual(getMessage(db, a.id), { ...a, reasoning: 'First, note that', completionTokens: 4, status: 'error', error: INTERRUPTED });
  assert.equal(getMessage(db, finished.id)?.status, 'done');
  assert.equal(getMessage(db, q.id)?.status, 'done');
  assert.equal(recoverInterruptedMessages(db), 0);
  db.close();
});
