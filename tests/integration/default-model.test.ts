// The built-in default model (resources/default-model, made by scripts/make-default-model.ts):
// `aha generate` uses it when no --model is given, and the app puts it in a fresh library and
// answers with it when a conversation has no model chosen. It thinks aloud, adds numbers and
// plays easy countdown (about one held-out problem in four: see training.json and the README).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultSampling, type EventOf, type Message } from '../../src-main/contract/api.ts';
import { createApp } from '../../src-main/services/app.ts';
import { forkHost } from '../../src-main/engine-host/client.ts';
import { DEFAULT_MODEL_NAME, defaultModelPath } from '../../src-main/services/models/default-model.ts';
import { gradeCountdown } from '../../src-main/services/graders/countdown.ts';
import { countdownQuestion, countdownReference, splitCountdown } from '../fixtures/countdown.ts';
import { aha, root } from './helpers.ts';

test('the default model ships in the checkout', () => {
  assert.equal(defaultModelPath(), join(root, 'resources/default-model'));
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'training.json'])
    assert.ok(existsSync(join(root, 'resources/default-model', f)), f);
});

test('aha generate without --model answers with the default model, reasoning first', () => {
  const g = aha('generate', '--chat', 'What is 37 + 45?', '--temperature', '0', '--max-tokens', '96', '--threads', '2', '--json');
  assert.equal(g.code, 0, g.stderr);
  const r = JSON.parse(g.stdout) as { text: string; finish_reason: string };
  assert.equal(r.text, '<think>7+5=12, carry 1. 3+4=7, 7+1=8.</think><answer>82</answer>');
  assert.equal(r.finish_reason, 'stop');
});

test('the default model answers countdown problems it never saw in training, guessing and checking in its think block', () => {
  // The held-out split of scripts/make-default-model.ts (seed 11, 300 problems); two it solves:
  // one at the first guess, one after a miss, multiplying last (what GRPO taught it).
  const { heldOut } = splitCountdown(11, 300);
  const cases: Array<[number, string]> = [
    // Using the numbers 3, 9, 4, make 33. / Using the numbers 6, 2, 1, make 14.
    [2, '<think>9*4=36, 36-3=33.</think><answer>(9*4)-3</answer>'],
    [49, '<think>6*1=6, 6+2=8 no. 6+1=7, 7*2=14.</think><answer>(6+1)*2</answer>'],
  ];
  for (const [i, want] of cases) {
    const p = heldOut[i];
    const g = aha('generate', '--chat', countdownQuestion(p), '--temperature', '0', '--max-tokens', '160', '--threads', '2', '--json');
    assert.equal(g.code, 0, g.stderr);
    const r = JSON.parse(g.stdout) as { text: string; finish_reason: string };
    assert.equal(r.text, want);
    assert.equal(r.finish_reason, 'stop');
    assert.equal(gradeCountdown(r.text, countdownReference(p)).score, 1, `${countdownQuestion(p)} ${r.text}`);
  }
});

test('the app: the default model is in a fresh library and answers a chat with no model chosen', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-default-model-'));
  const app = await createApp({ dataDir: join(dir, 'data'), spawnHost: forkHost(), shell: 'server', home: join(dir, 'home') });
  try {
    const [entry] = app.library.list();
    assert.equal(entry.name, DEFAULT_MODEL_NAME);
    assert.equal(entry.path, join(dir, 'data', 'models', 'default-model'), 'a copy in the data folder: one path across updates');
    const c = app.chat.create({ modelId: null });
    app.chat.update({ id: c.id, sampling: { ...defaultSampling, temperature: 0 } });
    const done = new Promise<Message>((resolve) => {
      const off = app.bus.subscribe((event, data) => {
        if (event !== 'chat.done') return;
        off();
        resolve((data as EventOf<'chat.done'>).message);
      });
    });
    app.chat.send({ conversationId: c.id, content: 'What is 58 + 27?' });
    const m = await done;
    assert.equal(m.status, 'done');
    assert.equal(m.reasoning, '8+7=15, carry 1. 5+2=7, 7+1=8.');
    assert.equal(m.content, '<answer>85</answer>');
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
