// LoRA adapters at inference through the addon and the CLI: several loaded per model and chosen
// per request, log-prob scoring with the adapter on and off against the logits, and
// `aha logits/generate --adapter DIR`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src-main/engine/native.ts';
import { aha, root } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');
const adapterDir = join(root, 'tests/fixtures/golden/lora/qwen2-tiny');
const tokens = [9707, 11, 1879, 0, 374, 264, 1273, 315, 279];

function logSoftmaxAt(row: Float32Array, id: number): number {
  let mx = -Infinity;
  for (const x of row) mx = Math.max(mx, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - mx);
  return row[id] - mx - Math.log(s);
}

test('adapters through the addon: chosen per request, scored on and off', async () => {
  const m = await native().loadModel(join(gen, 'qwen2-tiny'), { threads: 2, context: 64, kvType: 'f32' });
  try {
    const a = await m.loadAdapter(adapterDir, 'golden');
    assert.deepEqual([a.name, a.rank, a.alpha, a.scale, a.version], ['golden', 4, 8, 2, 0]);
    assert.equal(a.targetModules.length, 7);
    assert.deepEqual((await m.adapters()).map((x) => x.id), [a.id]);
    const seqs = [
      { prompt: tokens.slice(0, 4), completion: tokens.slice(4) },
      { prompt: [40], completion: [1079, 16, 17] },
    ];
    for (const adapter of [a.id, 0]) {
      const rows = await m.logits(tokens, true, adapter);
      const scored = await m.scoreLogprobs({ adapter, sequences: seqs });
      assert.equal(scored.length, 2);
      assert.equal(scored[0].length, 5);
      scored[0].forEach((lp, j) => assert.ok(Math.abs(lp - logSoftmaxAt(rows[3 + j], tokens[4 + j])) < 5e-5, `adapter ${adapter} token ${j}: ${lp}`));
    }
    const on = await m.logits(tokens, false, a.id);
    const off = await m.logits(tokens, false);
    assert.ok(on[0].some((x, i) => Math.abs(x - off[0][i]) > 1e-3), 'the adapter changes the logits');
    const [g1, g2] = await m.generate([
      { prompt: tokens, maxTokens: 4, temperature: 0, ignoreEos: true, adapter: a.id },
      { prompt: tokens, maxTokens: 4, temperature: 0, ignoreEos: true },
    ]);
    assert.equal(g1.tokens.length, 4);
    assert.equal(g2.cachedTokens, 0, 'no K/V shared between the adapter and the base model');
    await assert.rejects(m.logits(tokens, false, 99), /no LoRA adapter 99/);
    await assert.rejects(m.loadAdapter(join(root, 'tests/fixtures/golden/lora/qwen3-tiny')), /adapter_model\.safetensors: tensor .* has shape/);
    await m.removeAdapter(a.id);
    assert.deepEqual(await m.adapters(), []);
    await assert.rejects(m.generate([{ prompt: tokens, maxTokens: 1, adapter: a.id }]), /no LoRA adapter/);
  } finally {
    await m.unload();
  }
});

test('aha logits and generate --adapter DIR', () => {
  const model = join(gen, 'qwen2-tiny');
  const ids = tokens.join(',');
  const on = aha('logits', '--model', model, '--tokens', ids, '--adapter', adapterDir, '--kv', 'f32', '--threads', '2');
  assert.equal(on.code, 0, on.stderr);
  const off = aha('logits', '--model', model, '--tokens', ids, '--kv', 'f32', '--threads', '2');
  assert.equal(off.code, 0, off.stderr);
  const a = JSON.parse(on.stdout).logits[0] as number[];
  const b = JSON.parse(off.stdout).logits[0] as number[];
  assert.equal(a.length, b.length);
  assert.ok(a.some((x, i) => Math.abs(x - b[i]) > 1e-3));
  const g = aha('generate', '--model', model, '--prompt', 'Hello', '--adapter', adapterDir, '--temperature', '0', '--max-tokens', '3', '--json', '--threads', '2');
  assert.equal(g.code, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).tokens.length, 3);
  const bad = aha('logits', '--model', model, '--tokens', ids, '--adapter', join(root, 'tests/fixtures/golden/lora/nope'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /not a PEFT adapter folder/);
});

test('a trainer steps on worker threads; generation and scoring follow its adapter; saved and loaded back it scores the same', async () => {
  const m = await native().loadModel(join(gen, 'qwen2-tiny'), { threads: 2, context: 64, kvType: 'f32' });
  try {
    const t = await m.createTrainer({ init: { rank: 4, alpha: 8, seed: 3 }, maxGradNorm: 1 });
    assert.equal(t.initialStep, 0);
    const seqs = [{ prompt: tokens.slice(0, 4), completion: tokens.slice(4) }];
    const fresh = await m.scoreLogprobs({ adapter: t.adapterId, sequences: seqs });
    const base = await m.scoreLogprobs({ sequences: seqs });
    assert.deepEqual(fresh, base, 'B = 0: the fresh adapter is the base model');
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const batch = [{ inputIds: tokens, labels: tokens }];
    let last;
    for (let i = 0; i < 5; i++) last = await t.step({ microBatches: [batch, batch], lr: 1e-2 });
    clearInterval(timer);
    assert.equal(last!.step, 5);
    assert.equal(last!.targetTokens, 2 * (tokens.length - 1));
    assert.ok(ticks > 0, 'the event loop ran while the steps computed');
    const trained = await m.scoreLogprobs({ adapter: t.adapterId, sequences: seqs });
    const sum = (a: Float64Array) => a.reduce((x, y) => x + y, 0);
    assert.ok(sum(trained[0]) > sum(base[0]) + 1, `training raised the log-likelihood: ${sum(base[0])} → ${sum(trained[0])}`);
    assert.equal((await m.adapters()).find((a) => a.id === t.adapterId)!.version, 5);
    const dir = mkdtempSync(join(tmpdir(), 'aha-trainer-'));
    await t.save(dir);
    const loaded = await m.loadAdapter(dir);
    assert.deepEqual(await m.scoreLogprobs({ adapter: loaded.id, sequences: seqs }), trained);
    assert.deepEqual(await m.logits(tokens, false, loaded.id), await m.logits(tokens, false, t.adapterId));
    await assert.rejects(t.step({ microBatches: [[{ inputIds: [1, 2], labels: [-100, -100] }]], lr: 1e-2 }), /no target tokens/);
    await assert.rejects(m.createTrainer({ init: { rank: 0, alpha: 8 } }), /LoRA rank must be at least 1/);
    await assert.rejects(m.createTrainer({ init: { rank: 4, alpha: 8, targetModules: ['qkv'] } }), /unknown LoRA target module 'qkv'/);
  } finally {
    await m.unload();
  }
});
