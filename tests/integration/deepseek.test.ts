// A DeepSeek-V3 checkpoint through the native addon (the path `aha generate` and the app take):
// it loads from its HF folder, its logits match transformers' golden, the MLA latent cache is
// what info() reports, and greedy generation follows transformers' tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { native } from '../../src-main/engine/native.ts';
import { aha } from './helpers.ts';

const root = resolve(import.meta.dirname, '../..');
const model = join(root, 'tests/fixtures/generated-deepseek/deepseek-v3-tiny');

interface Golden {
  sequences: Array<{ tokens: number[]; positions: Array<{ top: Array<[number, number]> }> }>;
  greedy: { tokens: number[]; margins: number[] };
}
const golden = JSON.parse(readFileSync(join(root, 'tests/fixtures/golden/deepseek/deepseek-v3-tiny.json'), 'utf8')) as Golden;

test('DeepSeek-V3 from an HF folder: logits as transformers, the latent cache, greedy tokens', async () => {
  const m = await native().loadModel(model, { threads: 2, context: 128, kvType: 'f32' });
  try {
    const info = m.info();
    assert.equal(info.architecture, 'deepseek_v3');
    assert.equal(info.format, 'safetensors');
    // 3 layers × (kv_lora_rank 32 + qk_rope_head_dim 16) f32 per token, for 2 × 128 tokens.
    assert.equal(info.kvBytes, 2 * 128 * 3 * (32 + 16) * 4);
    assert.equal(info.kvType, 'f32');
    const seq = golden.sequences[0];
    const rows = await m.logits(seq.tokens, true);
    assert.equal(rows.length, seq.tokens.length);
    rows.forEach((row, p) => {
      const max = row.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
      for (const [id, v] of seq.positions[p].top) assert.ok(Math.abs(row[id] - v) < 1e-4 * max, `position ${p}, token ${id}: ${row[id]} vs ${v}`);
    });
    const [r] = await m.generate([{ prompt: seq.tokens, maxTokens: golden.greedy.tokens.length, temperature: 0, ignoreEos: true }]);
    const clear = golden.greedy.margins.findIndex((x) => x < 1e-3);
    const n = clear < 0 ? golden.greedy.tokens.length : clear;
    assert.deepEqual(r.tokens.slice(0, n), golden.greedy.tokens.slice(0, n));
  } finally {
    await m.unload();
  }
});

test('the MLA switch and the experts-per-token override reach the engine', async () => {
  const seq = golden.sequences[2].tokens;
  const logits = async (opts: { mlaAttention?: 'absorbed' | 'expanded'; expertsPerToken?: number }) => {
    const m = await native().loadModel(model, { threads: 2, context: 128, kvType: 'f32', ...opts });
    try {
      return await m.logits(seq, true);
    } finally {
      await m.unload();
    }
  };
  const a = await logits({ mlaAttention: 'absorbed' }), e = await logits({ mlaAttention: 'expanded' });
  let worst = 0;
  a.forEach((row, p) => {
    const max = row.reduce((x, v) => Math.max(x, Math.abs(v)), 0);
    row.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - e[p][i]) / max)));
  });
  assert.ok(worst > 0 && worst < 1e-5, `absorbed vs expanded: ${worst}`);
  const fewer = await logits({ expertsPerToken: 2 });
  assert.notDeepEqual(Array.from(fewer.at(-1)!), Array.from(a.at(-1)!));
  await assert.rejects(async () => native().loadModel(model, { expertsPerToken: 9 }), /experts per token = 9 is more than the 8 experts/);
  await assert.rejects(async () => native().loadModel(model, { mlaAttention: 'latent' as 'auto' }), /mlaAttention must be auto, absorbed or expanded/);
});

test('an FP8 checkpoint (DeepSeek-V3 layout) runs as stored (the logits of its F32 copy) or converted at load, its dtypes in aha info', () => {
  const dir = join(root, 'tests/fixtures/generated-deepseek');
  const info = aha('info', '--model', join(dir, 'deepseek-v3-tiny-128-fp8'), '--json');
  assert.equal(info.code, 0, info.stderr);
  assert.ok(JSON.parse(info.stdout).dtypeMix.fp8_b128 > 0);
  const conv = aha('info', '--model', join(dir, 'deepseek-v3-tiny-128-fp8'), '--fp8-as', 'q8_0', '--json');
  assert.equal(conv.code, 0, conv.stderr);
  const mix = JSON.parse(conv.stdout).dtypeMix;
  assert.ok(mix.q8_0 > 0 && !mix.fp8_b128, JSON.stringify(mix));
  const bad = aha('info', '--model', join(dir, 'deepseek-v3-tiny-128-fp8'), '--fp8-as', 'q4_0');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--fp8-as must be bf16, q8_0 or q4_K/);
  // the logits through the CLI: the FP8 weights as stored give those of the F32 copy
  const logits = (name: string, ...extra: string[]) => {
    const r = aha('logits', '--model', join(dir, name), '--tokens', '1,17,300,4000,25', '--all', '--kv', 'f32', '--threads', '2', '--json', ...extra);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { logits: number[][] }).logits.flat();
  };
  const want = logits('deepseek-v3-tiny-128-fp8-f32'), got = logits('deepseek-v3-tiny-128-fp8'), bf16 = logits('deepseek-v3-tiny-128-fp8', '--fp8-as', 'bf16');
  const maxAbs = Math.max(...want.map(Math.abs));
  const err = (a: number[]) => Math.max(...a.map((x, i) => Math.abs(x - want[i]))) / maxAbs;
  assert.ok(err(got) < 1e-5, `fp8 as stored: ${err(got)}`);
  assert.ok(err(bf16) > 0 && err(bf16) < 2e-2, `fp8 as bf16: ${err(bf16)}`);
});

test('aha generate --mtp: DeepSeek-V3\'s MTP module drafts, the output is plain greedy decoding\'s, the acceptance rate is reported', () => {
  const dir = join(root, 'tests/fixtures/generated-deepseek');
  for (const name of ['deepseek-v3-tiny-128', 'deepseek-v3-tiny-128-fp8']) {
    const run = (...extra: string[]) => {
      const r = aha('generate', '--model', join(dir, name), '--prompt', 'Hi there', '--max-tokens', '24', '--temperature', '0', '--json', '--threads', '2', ...extra);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as { tokens: number[]; mtp?: { drafted: number; accepted: number; acceptance_rate: number } };
    };
    const plain = run(), mtp = run('--mtp');
    assert.deepEqual(mtp.tokens, plain.tokens);
    assert.ok(mtp.mtp && mtp.mtp.drafted > 0 && mtp.mtp.accepted <= mtp.mtp.drafted && mtp.mtp.acceptance_rate === mtp.mtp.accepted / mtp.mtp.drafted);
    assert.equal(plain.mtp, undefined);
  }
  const none = aha('generate', '--model', join(dir, 'deepseek-v3-tiny'), '--prompt', 'Hi', '--max-tokens', '4', '--mtp', '--threads', '2');
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /--mtp needs a model with its multi-token-prediction module/);
  const hot = aha('generate', '--model', join(dir, 'deepseek-v3-tiny-128'), '--prompt', 'Hi', '--max-tokens', '4', '--mtp', '--temperature', '0.8', '--threads', '2');
  assert.notEqual(hot.code, 0);
  assert.match(hot.stderr, /MTP drafting is greedy/);
});
