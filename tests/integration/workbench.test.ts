// The dataset, grader and run channels through the contract's boundary (the same dispatch both
// transports use): import with a preset, generate, page and edit items, dedupe, split, export
// and re-import; grader configurations saved as versions and run in the playground; training
// runs (as a trainer writes them into the app's database) listed, with their metrics and rollouts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dispatch } from '../../src-main/contract/api.ts';
import { createApp, type App } from '../../src-main/services/app.ts';
import { forkHost } from '../../src-main/engine-host/client.ts';
import { createRun, recordRunStep, setRunStatus, type RunStepMetrics } from '../../src-main/db/runs.ts';

const fixtures = join(import.meta.dirname, '../fixtures/datasets');
let dir: string;
let app: App;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aha-workbench-'));
  app = await createApp({ dataDir: join(dir, 'data'), spawnHost: forkHost(), shell: 'server', home: join(dir, 'home'), defaultModel: false });
});

after(async () => {
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function call(channel: string, payload: unknown): Promise<any> {
  const r = await dispatch(app.handlers, channel, payload);
  if (r.error) throw Object.assign(new Error(r.error.message), { code: r.error.code });
  return r.result;
}

test('import a GSM8K file: references extracted, bad rows reported by line, the rest kept', async () => {
  const report = await call('datasets.import', { path: join(fixtures, 'gsm8k.jsonl'), preset: 'gsm8k', name: 'gsm8k-sample' });
  assert.ok(report.imported > 0);
  assert.equal(report.dataset.name, 'gsm8k-sample');
  assert.equal(report.dataset.kind, 'math');
  const { items, total } = await call('datasets.items', { id: report.dataset.id, limit: 2 });
  assert.equal(total, report.imported);
  assert.equal(items.length, 2);
  assert.equal(items[0].reference, '72');
  for (const e of report.errors) assert.ok(Number.isInteger(e.line) && e.line > 0 && e.reason.length > 0);
  await assert.rejects(call('datasets.import', { path: join(fixtures, 'gsm8k.jsonl'), name: 'gsm8k-sample' }), /exists already/);
  await assert.rejects(call('datasets.import', { path: join(dir, 'nope.jsonl') }), (e: any) => e.code === 'invalid_request' && /cannot read/.test(e.message));
});

test('generate countdown, dedupe, split with a seed, export and import back', async () => {
  const d = await call('datasets.generate', { generator: 'countdown', count: 40, seed: 7, name: 'cd' });
  assert.deepEqual([d.counts.total, d.counts.unsplit], [40, 40]);
  const again = await call('datasets.generate', { generator: 'countdown', count: 40, seed: 7, name: 'cd2' });
  const a = (await call('datasets.items', { id: d.id, limit: 40 })).items.map((i: any) => [i.prompt, i.reference]);
  const b = (await call('datasets.items', { id: again.id, limit: 40 })).items.map((i: any) => [i.prompt, i.reference]);
  assert.deepEqual(a, b, 'the same seed gives the same items');
  const dedupe = await call('datasets.dedupe', { id: d.id });
  assert.equal(dedupe.removed + dedupe.remaining, 40);
  const s1 = await call('datasets.split', { id: d.id, seed: 3, evalFraction: 0.25 });
  assert.equal(s1.train + s1.eval, dedupe.remaining);
  assert.equal(s1.eval, Math.round(dedupe.remaining * 0.25));
  const evalIds = (await call('datasets.items', { id: d.id, split: 'eval', limit: 100 })).items.map((i: any) => i.id);
  await call('datasets.split', { id: d.id, seed: 3, evalFraction: 0.25 });
  assert.deepEqual((await call('datasets.items', { id: d.id, split: 'eval', limit: 100 })).items.map((i: any) => i.id), evalIds, 'same seed, same split');
  const out = join(dir, 'cd.jsonl');
  const exp = await call('datasets.export', { id: d.id, path: out });
  assert.equal(exp.written, dedupe.remaining);
  assert.equal(readFileSync(out, 'utf8').trim().split('\n').length, dedupe.remaining);
  const back = await call('datasets.import', { path: out, name: 'cd-back' });
  const orig = (await call('datasets.items', { id: d.id, limit: 100 })).items;
  const round = (await call('datasets.items', { id: back.dataset.id, limit: 100 })).items;
  assert.deepEqual(round.map((i: any) => [i.prompt, i.reference, i.split]), orig.map((i: any) => [i.prompt, i.reference, i.split]));
});

test('edit an item; bad payloads and unknown ids are refused', async () => {
  const d = (await call('datasets.list', {})).find((x: any) => x.name === 'cd');
  const [item] = (await call('datasets.items', { id: d.id, limit: 1 })).items;
  const edited = await call('datasets.updateItem', { id: item.id, reference: '{"numbers":[1,2],"target":3}', tags: ['checked'] });
  assert.deepEqual(edited.tags, ['checked']);
  assert.equal((await call('datasets.items', { id: d.id, tag: 'checked' })).total, 1);
  await assert.rejects(call('datasets.items', { id: 99999 }), (e: any) => e.code === 'not_found');
  await assert.rejects(call('datasets.generate', { generator: 'sudoku', count: 1, seed: 1 }), (e: any) => e.code === 'invalid_request');
  await assert.rejects(call('datasets.split', { id: d.id, seed: 1, evalFraction: 2 }), (e: any) => e.code === 'invalid_request');
  await call('datasets.delete', { id: d.id });
  await assert.rejects(call('datasets.delete', { id: d.id }), (e: any) => e.code === 'not_found');
});

test('graders: configurations saved as versions, bad ones refused, the playground grades', async () => {
  const v1 = await call('graders.save', { config: { name: 'math', kind: 'math', options: {} } });
  const v2 = await call('graders.save', { config: { name: 'math', kind: 'math', options: { relTol: 1e-3 } } });
  assert.equal(v1.config.version, 1);
  assert.equal(v2.config.version, 2);
  const list = await call('graders.list', {});
  assert.equal(list.find((g: any) => g.config.name === 'math').config.version, 2);
  await assert.rejects(call('graders.save', { config: { name: 'x', kind: 'telepathy', options: {} } }), (e: any) => e.code === 'invalid_request');
  const results = await call('graders.run', {
    grader: { name: 'math' },
    items: [
      { completion: '<think>48 + 24</think> The answer is \\boxed{72}.', reference: '72' },
      { completion: '<think>hmm</think> It is 71.', reference: '72' },
    ],
  });
  assert.deepEqual(results.map((r: any) => r.score), [1, 0]);
  assert.ok(results.every((r: any) => typeof r.explanation === 'string' && r.explanation.length > 0));
  const inline = await call('graders.run', { grader: { config: { name: 'cd', kind: 'countdown', options: {} } }, items: [{ completion: '<answer>(1 + 2) * 3</answer>', reference: { numbers: [1, 2, 3], target: 9 } }] });
  assert.equal(inline[0].score, 1);
  await assert.rejects(call('graders.run', { grader: { name: 'nobody' }, items: [{ completion: 'x' }] }), (e: any) => e.code === 'not_found');
});

test('runs: listed newest first, metrics after a step, rollouts paged by step; unknown runs and bad payloads refused', async () => {
  const step = (n: number): RunStepMetrics => ({
    step: n, loss: 1 / n, lr: 1e-4, gradNorm: 0.5, tokensPerSecond: 900, stepSeconds: 0.2, epoch: n / 4, tokens: 100, targetTokens: 30,
    rewardMean: null, rewardStd: null, rewards: null, fracRewardZeroStd: null, completionLengthMean: null, completionLengthMin: null,
    completionLengthMax: null, completionClippedShare: null, clipLowMean: null, clipHighMean: null, clipRegionMean: null, clipLowMin: null,
    clipHighMax: null, kl: null, entropy: null, rolloutTokensPerSecond: null, rolloutSeconds: null, gradingSeconds: null, scoringSeconds: null,
    forwardBackwardSeconds: null, forwardSeconds: null, backwardSeconds: null, optimizerSeconds: null,
  });
  const sft = createRun(app.db, { kind: 'sft', model: '/m', dataset: '/d.jsonl', config: { rank: 8 }, outDir: '/o1' }, 1000);
  for (const n of [1, 2, 3]) recordRunStep(app.db, sft.id, step(n));
  setRunStatus(app.db, sft.id, 'done', null, 2000);
  const grpo = createRun(app.db, { kind: 'grpo', model: '/m', dataset: '/p.jsonl', config: { numGenerations: 2 }, outDir: '/o2' }, 3000);
  const rollout = (position: number) => ({
    position, prompt: 'What is 2 + 3?', completion: `<think>hm</think> ${position + 4}`, completionIds: [1, 2], truncated: false,
    scores: { math: position === 1 ? 1 : 0 }, explanations: { math: '' }, reward: position === 1 ? 1 : 0, advantage: position === 1 ? 0.7 : -0.7, logprobs: [-1, -2],
  });
  for (const n of [1, 2]) recordRunStep(app.db, grpo.id, { ...step(n), rewardMean: 0.5, rewards: { math: { mean: 0.5, std: 0.7 } } }, [rollout(0), rollout(1)]);

  const runs = await call('runs.list', {});
  assert.deepEqual(runs.map((r: any) => [r.id, r.kind, r.status, r.step, r.endedAt]), [[grpo.id, 'grpo', 'running', 2, null], [sft.id, 'sft', 'done', 3, 2000]]);
  assert.deepEqual(await call('runs.get', { id: sft.id }), runs[1]);
  assert.deepEqual((await call('runs.metrics', { id: sft.id, afterStep: 1 })).map((m: any) => [m.step, m.loss]), [[2, 0.5], [3, 1 / 3]]);
  assert.deepEqual((await call('runs.metrics', { id: grpo.id })).map((m: any) => m.rewards), [{ math: { mean: 0.5, std: 0.7 } }, { math: { mean: 0.5, std: 0.7 } }]);
  const page = await call('runs.rollouts', { id: grpo.id, step: 2, offset: 1 });
  assert.equal(page.total, 2);
  assert.deepEqual(page.rollouts.map((r: any) => [r.step, r.position, r.reward, r.logprobs]), [[2, 1, 1, [-1, -2]]]);
  assert.equal((await call('runs.rollouts', { id: grpo.id })).total, 4);
  await assert.rejects(call('runs.get', { id: 99999 }), (e: any) => e.code === 'not_found' && /no run 99999/.test(e.message));
  await assert.rejects(call('runs.rollouts', { id: 99999 }), (e: any) => e.code === 'not_found');
  await assert.rejects(call('runs.rollouts', { id: grpo.id, limit: 0 }), (e: any) => e.code === 'invalid_request');
  await assert.rejects(call('runs.metrics', { id: grpo.id, status: 'done' }), (e: any) => e.code === 'invalid_request');
});
