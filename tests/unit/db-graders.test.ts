// Grader configurations in SQLite: saving adds versions, the latest by name, exact versions kept,
// invalid configurations refused, and the table's own checks behind them.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deleteGrader, getGrader, listGraderVersions, listGraders, saveGrader } from '../../src-main/db/graders.ts';
import { openDatabase } from '../../src-main/db/index.ts';

test('saving a grader again adds a version; the latest is read by name, older ones by number', () => {
  const db = openDatabase(':memory:');
  const v1 = saveGrader(db, { name: 'math', kind: 'math-answer', options: { tolerance: 1e-6, extract: ['boxed', 'answer-tag'] } }, 100);
  assert.deepEqual(v1, { id: v1.id, config: { name: 'math', version: 1, kind: 'math-answer', options: { tolerance: 1e-6, extract: ['boxed', 'answer-tag'] } }, createdAt: 100 });
  const v2 = saveGrader(db, { name: 'math', kind: 'math-answer', options: { tolerance: 1e-4 } }, 200);
  assert.equal(v2.config.version, 2);
  assert.deepEqual(getGrader(db, 'math'), v2);
  assert.deepEqual(getGrader(db, 'math', 1), v1);
  assert.equal(getGrader(db, 'math', 3), undefined);
  assert.equal(getGrader(db, 'nothing'), undefined);
  assert.deepEqual(listGraderVersions(db, 'math'), [v2, v1]);
  db.close();
});

test('an explicit version is kept; one that exists is refused and versions are never overwritten', () => {
  const db = openDatabase(':memory:');
  const v5 = saveGrader(db, { name: 'fmt', version: 5, kind: 'format', options: {} });
  assert.equal(v5.config.version, 5);
  assert.equal(saveGrader(db, { name: 'fmt', kind: 'format', options: { think: true } }).config.version, 6);
  assert.throws(() => saveGrader(db, { name: 'fmt', version: 5, kind: 'format', options: { think: false } }), /grader "fmt" already has a version 5/);
  assert.deepEqual(getGrader(db, 'fmt', 5), v5);
  assert.equal(saveGrader(db, { name: 'fmt', version: 2, kind: 'format', options: {} }).config.version, 2);
  assert.equal(getGrader(db, 'fmt')?.config.version, 6, 'the latest is the highest version, not the last saved');
  db.close();
});

test('the list holds the latest version of each grader, by name', () => {
  const db = openDatabase(':memory:');
  saveGrader(db, { name: 'weighted', kind: 'sum', options: { parts: [{ grader: 'math', weight: 1 }] } });
  saveGrader(db, { name: 'code', kind: 'code', options: { timeoutMs: 5000 } });
  const w2 = saveGrader(db, { name: 'weighted', kind: 'sum', options: { parts: [{ grader: 'math', weight: 1 }, { grader: 'fmt', weight: 0.2 }] } });
  assert.deepEqual(
    listGraders(db).map((g) => [g.config.name, g.config.version]),
    [
      ['code', 1],
      ['weighted', 2],
    ],
  );
  assert.deepEqual(listGraders(db)[1], w2);
  db.close();
});

test('a description is kept and absent options are stored as {}', () => {
  const db = openDatabase(':memory:');
  const g = saveGrader(db, { name: 'fmt', kind: 'format', description: 'think block and answer tag' });
  assert.deepEqual(g.config, { name: 'fmt', version: 1, kind: 'format', description: 'think block and answer tag', options: {} });
  assert.deepEqual(getGrader(db, 'fmt'), g);
  db.close();
});

test('invalid configurations are refused and nothing is stored', () => {
  const db = openDatabase(':memory:');
  assert.throws(() => saveGrader(db, { name: ' ', kind: 'math', options: {} }), /invalid grader configuration: [^]*name/);
  assert.throws(() => saveGrader(db, { name: 'm', kind: '', options: {} }), /invalid grader configuration: [^]*kind/);
  assert.throws(() => saveGrader(db, { name: 'm', kind: 'math', options: [] as never }), /invalid grader configuration: [^]*options/);
  assert.throws(() => saveGrader(db, { name: 'm', kind: 'math', options: { f: (() => 1) as never } }), /invalid grader configuration/);
  assert.throws(() => saveGrader(db, { name: 'm', kind: 'math', options: { x: Number.NaN } }), /invalid grader configuration/);
  assert.throws(() => saveGrader(db, { name: 'm', version: 0, kind: 'math', options: {} }), /invalid grader configuration: [^]*version/);
  assert.throws(() => saveGrader(db, { name: 'm', kind: 'math', options: {}, extra: 1 } as never), /invalid grader configuration/);
  assert.deepEqual(listGraders(db), []);
  db.close();
});

test('the table refuses rows whose config disagrees with their name and version', () => {
  const db = openDatabase(':memory:');
  const put = db.prepare('INSERT INTO graders (name, version, config, created_at) VALUES (?, ?, ?, 0)');
  assert.throws(() => put.run('a', 1, JSON.stringify({ name: 'b', version: 1, kind: 'k', options: {} })), /CHECK constraint failed/);
  assert.throws(() => put.run('a', 1, JSON.stringify({ name: 'a', version: 2, kind: 'k', options: {} })), /CHECK constraint failed/);
  assert.throws(() => put.run('a', 1, JSON.stringify({ name: 'a', version: 1, kind: 'k', options: [] })), /CHECK constraint failed/);
  assert.throws(() => put.run('a', 1, JSON.stringify({ name: 'a', version: 1, options: {} })), /CHECK constraint failed/);
  put.run('a', 1, JSON.stringify({ name: 'a', version: 1, kind: 'k', options: {} }));
  assert.throws(() => put.run('a', 1, JSON.stringify({ name: 'a', version: 1, kind: 'k', options: {} })), /UNIQUE constraint failed/);
  db.close();
});

test('deleting one version or all of a grader', () => {
  const db = openDatabase(':memory:');
  for (let k = 0; k < 3; k++) saveGrader(db, { name: 'g', kind: 'exact', options: { k } });
  saveGrader(db, { name: 'h', kind: 'exact', options: {} });
  assert.equal(deleteGrader(db, 'g', 3), 1);
  assert.deepEqual(getGrader(db, 'g')?.config.options, { k: 1 });
  assert.equal(deleteGrader(db, 'g', 3), 0);
  assert.equal(deleteGrader(db, 'g'), 2);
  assert.equal(getGrader(db, 'g'), undefined);
  assert.deepEqual(listGraders(db).map((g) => g.config.name), ['h']);
  assert.equal(saveGrader(db, { name: 'g', kind: 'exact', options: {} }).config.version, 1, 'a name deleted whole starts again at 1');
  db.close();
});
