// The GRPO loop's step (src-main/train/grpo-run.ts) on a tiny model: G completions per prompt
// from the trained adapter, graders, the engine's step; the metrics agree with the rollouts,
// the sampling is seeded (a second run repeats the first), the KL to the adapter-off model is 0
// before the first update and positive after it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { openModel } from '../../src-main/engine/open.ts';
import { graderFromConfig } from '../../src-main/services/graders/config.ts';
import { GRPO_DEFAULTS, grpoStep, type GrpoConfig, type GrpoContext } from '../../src-main/train/grpo-run.ts';

const root = resolve(import.meta.dirname, '../..');
const model = join(root, 'tests/fixtures/generated/qwen2-tiny');

// Share of ASCII letters in the completion: varies from sample to sample of a random model.
const letters = {
  name: 'letters',
  grade: ({ completion }: { completion: string }) => {
    const n = [...completion].length;
    return { score: n ? [...completion].filter((c) => /[A-Za-z]/.test(c)).length / n : 0, explanation: 'share of ASCII letters' };
  },
};
const items = [
  { prompt: 'What is 2 + 3?', reference: '5' },
  { prompt: 'Reach 10 with 2, 5.', reference: '10' },
];
let eos: number[] = [];
const config: GrpoConfig = { ...GRPO_DEFAULTS, numGenerations: 4, promptsPerStep: 2, maxCompletionTokens: 6, lr: 1e-2, seed: 5, beta: 0.04 };

async function twoSteps() {
  const m = await openModel(model, { threads: 2, context: 128 });
  eos = m.model.info().config.eosTokenIds;
  try {
    const trainer = await m.model.createTrainer({ init: { rank: 4, alpha: 8, seed: 1 } });
    const ctx: GrpoContext = {
      model: m.model,
      trainer,
      tokenizer: m.tokenizer,
      template: m.template,
      graders: [
        { grader: letters, weight: 2 },
        { grader: graderFromConfig({ name: 'math', version: 1, kind: 'math' }), weight: 0.5 },
      ],
    };
    return [await grpoStep(ctx, config, items, 0), await grpoStep(ctx, config, items, 1)];
  } finally {
    await m.model.unload();
  }
}

test('a GRPO step: rollouts, grades, the engine step, and metrics that agree with them', async () => {
  const steps = await twoSteps();
  for (const [k, { metrics, rollouts }] of steps.entries()) {
    assert.equal(metrics.step, k + 1);
    assert.equal(rollouts.length, 8);
    for (const r of rollouts) {
      assert.ok(r.completionTokens.length >= 1 && r.completionTokens.length <= 6);
      assert.equal(r.logprobs.length, r.completionTokens.length);
      assert.equal(r.truncated, !eos.includes(r.completionTokens.at(-1)!), 'truncated: stopped without an eos token');
      assert.ok(r.logprobs.every((x) => x <= 0 && Number.isFinite(x)));
      assert.ok(Math.abs(r.reward - (2 * r.scores.letters + 0.5 * r.scores.math)) < 1e-12);
    }
    const rewards = rollouts.map((r) => r.reward);
    const mean = rewards.reduce((s, x) => s + x, 0) / 8;
    assert.ok(Math.abs(metrics.reward.mean - mean) < 1e-12);
    assert.ok(metrics.reward.std > 0, 'the samples differ in reward');
    assert.ok(Math.abs(metrics.rewards.letters.mean - rollouts.reduce((s, r) => s + r.scores.letters, 0) / 8) < 1e-12);
    // group scaling: each group's advantages sum to 0
    for (let p = 0; p < 2; p++) assert.ok(Math.abs(rollouts.slice(p * 4, p * 4 + 4).reduce((s, r) => s + r.advantage, 0)) < 1e-9);
    const lengths = rollouts.map((r) => r.completionTokens.length);
    assert.equal(metrics.completionLength.max, Math.max(...lengths));
    assert.equal(metrics.completionLength.clippedShare, rollouts.filter((r) => r.truncated).length / 8);
    assert.equal(metrics.clipRatio.regionMean, 0, 'μ = 1: the ratio is 1');
    assert.ok(metrics.gradNorm > 0 && Number.isFinite(metrics.loss) && metrics.entropy > 0);
    assert.ok(metrics.seconds.total >= metrics.seconds.rollout + metrics.seconds.grading);
  }
  // A fresh adapter (B = 0) is the base model: no KL before the first update, some after it.
  assert.equal(steps[0].metrics.kl, 0);
  assert.ok(steps[1].metrics.kl! > 0);

  const again = await twoSteps();
  assert.deepEqual(again.map((s) => s.rollouts.map((r) => r.completionTokens)), steps.map((s) => s.rollouts.map((r) => r.completionTokens)), 'seeded sampling repeats');
  assert.deepEqual(again.map((s) => s.metrics.loss), steps.map((s) => s.metrics.loss));
});
