// `aha grad --grpo` end to end: the TRL golden's rollouts (tests/fixtures/golden/grpo, made by
// tests/oracle/grpo_golden.py) through the CLI, the addon and the engine; the loss, advantages,
// TRL's metrics and the gradients read back from the safetensors file; the truncation default
// (no eos at the end) and the errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aha, readSafetensors, root } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');
const adapters = join(root, 'tests/fixtures/golden/lora');
const goldens = join(root, 'tests/fixtures/golden/grpo');

interface Case {
  name: string;
  rollouts: Record<string, unknown> & { truncated?: boolean[][] };
  advantages: number[][];
  frac_reward_zero_std: number;
  loss: number;
  num_items_in_batch: number;
  metrics: Record<string, number>;
  grads: Record<string, { shape: number[]; norm: number; idx: number[]; val: number[] }>;
}

interface Out {
  loss: number;
  loss_tokens: number;
  sequences: number;
  masked_sequences: number;
  advantages: number[][];
  frac_reward_zero_std: number;
  kl: number | null;
  entropy: number;
  clip_ratio: { low_mean: number; high_mean: number; region_mean: number; low_min: number | null; high_max: number | null };
}

function run(model: string, adapter: string, rollouts: object, dtype: 'f32' | 'f64', dir: string): { out: Out; grads: string } {
  const file = join(dir, 'rollouts.json');
  writeFileSync(file, JSON.stringify(rollouts));
  const grads = join(dir, `grads-${dtype}.safetensors`);
  const r = aha('grad', '--model', model, '--adapter', adapter, '--grpo', file, '--out', grads, '--dtype', dtype, '--json', '--threads', '2');
  assert.equal(r.code, 0, r.stderr);
  return { out: JSON.parse(r.stdout) as Out, grads };
}

test('aha grad --grpo matches TRL on every loss type, on- and off-policy with the KL term', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-'));
  const plan: [string, string, string[], number][] = [
    // model file, golden, cases, f64 tolerance (llama: the engine's llama3 inv_freq, see test_grpo_golden.cpp)
    ['qwen2-tiny', 'qwen2-tiny', ['grpo-none', 'bnpo-group', 'dr_grpo-batch', 'dapo-offpolicy-kl', 'grpo-offpolicy-kl'], 1e-9],
    ['llama-tiny-f32.gguf', 'llama-tiny', ['dapo-offpolicy-kl'], 1e-6],
  ];
  for (const [file, golden, names, f64tol] of plan) {
    const cases = (JSON.parse(readFileSync(join(goldens, `${golden}.json`), 'utf8')) as { cases: Case[] }).cases;
    for (const name of names) {
      const c: Case | undefined = cases.find((x) => x.name === name);
      if (!c) throw new Error(`${golden} golden lacks ${name}`);
      for (const [dtype, tol] of [['f64', f64tol], ['f32', 2e-5]] as const) {
        const { out, grads } = run(join(gen, file), join(adapters, golden), c.rollouts, dtype, dir);
        const what = `${file} ${name} ${dtype}`;
        assert.equal(out.loss_tokens, c.num_items_in_batch, what);
        assert.ok(Math.abs(out.loss - c.loss) <= tol * Math.max(1, Math.abs(c.loss)), `${what}: loss ${out.loss} vs TRL ${c.loss}`);
        c.advantages.forEach((g, p) => g.forEach((a, k) => assert.ok(Math.abs(out.advantages[p][k] - a) < 1e-12, `${what}: advantage [${p}][${k}]`)));
        assert.ok(Math.abs(out.frac_reward_zero_std - c.frac_reward_zero_std) < 1e-7);
        const m = c.metrics;
        if ('kl' in m) assert.ok(out.kl !== null && Math.abs(out.kl - m.kl) < 2e-5, `${what}: kl ${out.kl} vs ${m.kl}`);
        else assert.equal(out.kl, null);
        assert.ok(Math.abs(out.entropy - m.entropy) < 2e-5 * m.entropy, `${what}: entropy`);
        assert.ok(Math.abs(out.clip_ratio.region_mean - m['clip_ratio/region_mean']) < 1e-7, `${what}: clip ratio`);
        assert.ok(Math.abs((out.clip_ratio.high_max ?? NaN) - m['clip_ratio/high_max']) < 1e-7, `${what}: high_max`);
        const { tensors, metadata } = readSafetensors(grads);
        assert.equal(Number(metadata.loss), out.loss);
        assert.deepEqual(Object.keys(tensors).sort(), Object.keys(c.grads).sort());
        for (const k of Object.keys(c.grads)) {
          const g: Case['grads'][string] = c.grads[k];
          const t: { dtype: string; shape: number[]; values: number[] } = tensors[k];
          assert.equal(t.dtype, dtype === 'f64' ? 'F64' : 'F32');
          assert.deepEqual(t.shape, g.shape);
          g.idx.forEach((i, n) => assert.ok(Math.abs(t.values[i] - g.val[n]) <= tol * g.norm, `${what} ${k}[${i}]: ${t.values[i]} vs TRL ${g.val[n]}`));
        }
      }
    }
  }
});

test('aha grad --grpo: truncation defaults to "no eos at the end"; bad rollouts give clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-'));
  const model = join(gen, 'qwen2-tiny');
  const adapter = join(adapters, 'qwen2-tiny');
  const c = (JSON.parse(readFileSync(join(goldens, 'qwen2-tiny.json'), 'utf8')) as { cases: Case[] }).cases.find((x) => x.name === 'dapo-offpolicy-kl')!;
  assert.ok(c.rollouts.truncated!.flat().some((t) => t) && c.rollouts.truncated!.flat().some((t) => !t));
  const { truncated, ...rest } = c.rollouts;
  const derived = run(model, adapter, rest, 'f64', dir).out;
  assert.equal(derived.masked_sequences, truncated!.flat().filter((t) => t).length);
  assert.equal(derived.loss_tokens, c.num_items_in_batch);
  assert.ok(Math.abs(derived.loss - c.loss) < 1e-9);

  const file = join(dir, 'bad.json');
  const out = join(dir, 'g.safetensors');
  const bad = (rollouts: object, pattern: RegExp) => {
    writeFileSync(file, JSON.stringify(rollouts));
    const r = aha('grad', '--model', model, '--adapter', adapter, '--grpo', file, '--out', out);
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, pattern);
  };
  const base = { prompts: [[1, 2]], completions: [[[3, 4], [5]]], rewards: [[1, 0]] };
  bad({ ...base, rewards: [[1]] }, /bad\.json: rewards\[0\] has 1 rewards for 2 completions/);
  bad({ ...base, loss: { type: 'ppo' } }, /unknown GRPO loss type 'ppo'/);
  bad({ ...base, loss: { type: 'dr_grpo' } }, /dr_grpo loss needs max_completion_length/);
  bad({ ...base, loss: { max_completion_length: 1 } }, /GRPO sequence 0 has 2 completion tokens, more than max_completion_length \(1\)/);
  bad({ ...base, loss: { scale_rewards: 'rank' } }, /unknown reward scaling 'rank'/);
  bad({ ...base, old_logprobs: [[[-1], [-1]]] }, /GRPO sequence 0: 1 old log-probs for 2 completion tokens/);
  bad({ ...base, completions: [[[3, 4], []]] }, /GRPO sequence 1 has an empty completion/);
  bad({ ...base, extra: 1 }, /unknown field 'extra'/);
  const both = aha('grad', '--model', model, '--adapter', adapter, '--grpo', file, '--sft', file, '--out', out);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give one of --sft FILE and --grpo ROLLOUTS\.json/);
});
