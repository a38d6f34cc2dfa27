// What `aha train --dataset FILE|ID` reads (src-main/train/data.ts): a file as it is; a stored
// dataset by id or by name as the loops' JSONL (GRPO: prompt, reference or code tests, system
// prompt; SFT: the worked solution as the answer), its eval split left out; unknown ids and
// datasets with nothing to train on refused with what there is.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createDataset, insertItems } from '../../src-main/db/datasets.ts';
import { openDatabase } from '../../src-main/db/index.ts';
import { resolveTrainingData } from '../../src-main/train/data.ts';
import { readGrpoPrompts } from '../../src-main/train/grpo-run.ts';

const dir = mkdtempSync(join(tmpdir(), 'aha-train-data-'));

function withDatasets() {
  const db = openDatabase(':memory:');
  const math = createDataset(db, { name: 'math', kind: 'math', source: 'generator:arithmetic' });
  insertItems(db, math.id, [
    { prompt: 'What is 2 + 3?', reference: '5', solution: '2 + 3 = 5. The answer is 5.', split: 'train' },
    { prompt: 'What is 4 + 4?', reference: '8', systemPrompt: 'Be brief.', split: 'train' },
    { prompt: 'What is 9 - 1?', reference: '8', solution: '9 - 1 = 8.', split: 'eval' },
  ]);
  const code = createDataset(db, { name: '42', kind: 'code', source: 'file.jsonl' });
  insertItems(db, code.id, [{ prompt: 'Write add(a, b).', tests: { language: 'python', tests: ['assert add(1, 2) == 3'] } }]);
  return { db, math, code };
}

test('a file is read as it is', () => {
  const { db } = withDatasets();
  const file = join(dir, 'p.jsonl');
  writeFileSync(file, '{"prompt": "hi"}\n');
  assert.deepEqual(resolveTrainingData(db, 'aha.db', file, 'grpo'), { label: file, text: '{"prompt": "hi"}\n' });
  assert.throws(() => resolveTrainingData(db, 'aha.db', dir, 'grpo'), new RegExp(`${dir} is a folder, not a data file`));
});

test('GRPO: a stored dataset by id or name, as prompts with their references; the eval split left out', () => {
  const { db, math, code } = withDatasets();
  const byId = resolveTrainingData(db, 'aha.db', String(math.id), 'grpo');
  assert.equal(byId.label, `dataset ${math.id} "math"`);
  assert.equal(byId.dataset?.id, math.id);
  assert.equal(byId.note, `dataset ${math.id} "math": 2 prompts (left out: 1 eval item)`);
  const { prompts, skipped } = readGrpoPrompts(byId.text);
  assert.deepEqual(skipped, []);
  assert.deepEqual(prompts, [
    { prompt: 'What is 2 + 3?', reference: '5' },
    { prompt: 'What is 4 + 4?', reference: '8', systemPrompt: 'Be brief.' },
  ]);
  assert.deepEqual(resolveTrainingData(db, 'aha.db', 'math', 'grpo'), byId, 'by name');
  // A name that reads as a number: no dataset has that id, the one with that name is taken.
  const tests = resolveTrainingData(db, 'aha.db', '42', 'grpo');
  assert.equal(tests.dataset?.id, code.id);
  assert.deepEqual(readGrpoPrompts(tests.text).prompts, [{ prompt: 'Write add(a, b).', reference: { language: 'python', tests: ['assert add(1, 2) == 3'] } }]);
});

test('SFT: the worked solutions are the answers; items without one are left out and counted', () => {
  const { db, math, code } = withDatasets();
  const d = resolveTrainingData(db, 'aha.db', 'math', 'sft');
  assert.deepEqual(d.text.trim().split('\n').map((l) => JSON.parse(l)), [
    { messages: [{ role: 'user', content: 'What is 2 + 3?' }, { role: 'assistant', content: '2 + 3 = 5. The answer is 5.' }] },
  ]);
  assert.equal(d.note, `dataset ${math.id} "math": 1 example (left out: 1 eval item, 1 item without a worked solution to learn)`);
  assert.throws(() => resolveTrainingData(db, 'aha.db', String(code.id), 'sft'), new RegExp(`dataset ${code.id} "42" has no items to train on \\(left out: 1 item without a worked solution to learn\\)`));
});

test('an unknown id or name is refused with the datasets there are', () => {
  const { db, math, code } = withDatasets();
  assert.throws(
    () => resolveTrainingData(db, '/data/aha.db', '999', 'grpo'),
    new Error(`--dataset 999: no such file, and no dataset with that id or name in /data/aha.db (its datasets: ${code.id} "42", ${math.id} "math")`),
  );
  assert.throws(() => resolveTrainingData(openDatabase(':memory:'), '/data/aha.db', 'gsm8k', 'grpo'), /no dataset with that id or name in \/data\/aha\.db \(it holds no datasets yet; import or generate one in the app\)/);
});
