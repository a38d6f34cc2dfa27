// `aha train sft` end to end: a tiny model memorizes a tiny dataset (and then answers with the
// adapter), a run killed with SIGKILL resumes with exactly the losses and adapter of a run never
// interrupted, a blown-up learning rate stops with a clear message and an intact checkpoint,
// and bad input gives counted warnings or clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aha, dataset, killAtCheckpoint, lines, root, steps, testEnv } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');
const cli = join(root, 'bin/aha.mjs');



const TINY = [
  { prompt: 'What is 2+2?', completion: 'It is 4.' },
  { prompt: 'Capital of France?', completion: 'Paris.' },
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello there.' }, { role: 'user', content: 'Bye' }, { role: 'assistant', content: 'Goodbye!' }] },
  { prompt: 'Color of the sky?', completion: 'Blue.' },
];


test('a tiny model memorizes a tiny dataset, then answers with the adapter', () => {
  const out = mkdtempSync(join(tmpdir(), 'aha-train-'));
  const data = dataset(TINY);
  const t0 = Date.now();
  const r = aha('train', 'sft', '--model', join(gen, 'qwen3-tiny'), '--data', data, '--out', out, '--lr', '1e-2', '--epochs', '25', '--batch', '4',
    '--rank', '16', '--alpha', '32', '--schedule', 'constant', '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = steps(r.stdout);
  assert.equal(s.length, 25);
  for (const l of s) assert.ok(Number.isFinite(l.loss) && l.lr === 1e-2 && l.grad_norm > 0 && l.tokens_per_s > 0);
  assert.ok(s[0].loss > 10, `first loss ${s[0].loss}`);
  assert.ok(s[24].loss < 0.05, `last loss ${s[24].loss}: not memorized`);
  const done = lines(r.stdout).at(-1)!;
  assert.equal(done.event, 'done');
  assert.equal(done.last_loss, s[24].loss);
  process.stderr.write(`memorize: ${(Date.now() - t0) / 1000}s, losses ${s.filter((_, i) => i % 4 === 0).map((l) => l.loss.toFixed(3)).join(' ')}\n`);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.r, 16);
  assert.equal(cfg.lora_alpha, 32);
  assert.equal(cfg.peft_type, 'LORA');
  assert.ok(existsSync(join(out, 'adapter_model.safetensors')));
  // the adapter answers the training prompt greedily
  const g = aha('generate', '--model', join(gen, 'qwen3-tiny'), '--adapter', out, '--chat', 'What is 2+2?', '--temperature', '0', '--max-tokens', '16', '--json', '--threads', '2');
  assert.equal(g.code, 0, g.stderr);
  assert.match(JSON.parse(g.stdout).text, /It is 4\./);
});

test('a tiny DeepSeek (MLA + MoE) memorizes too: every MLA, dense-layer and shared-expert projection adapted, then answers with the adapter', () => {
  const model = join(root, 'tests/fixtures/generated-deepseek/deepseek-v3-tiny');
  const data = dataset(TINY);
  const run = (...extra: string[]) => {
    const out = mkdtempSync(join(tmpdir(), 'aha-train-ds-'));
    return { out, r: aha('train', 'sft', '--model', model, '--data', data, '--out', out, '--lr', '1e-2', '--batch', '4', '--rank', '16', '--alpha', '32',
      '--schedule', 'constant', '--threads', '2', '--json', ...extra) };
  };
  const { out, r } = run('--epochs', '40');
  assert.equal(r.code, 0, r.stderr);
  const s = steps(r.stdout);
  assert.equal(s.length, 40);
  assert.ok(s[0].loss > 8, `first loss ${s[0].loss}`);
  // The fixture's frozen lm head (N(0, 0.02²) over 129280 tokens behind a frozen final norm) caps
  // how peaked the logits can get: the loss floors near 1.36 (the answers already greedy), where
  // qwen3-tiny's reaches 0. Memorized here means below 1.6 and every answer right, greedily.
  assert.ok(s[39].loss < 1.6, `last loss ${s[39].loss}: not memorized`);
  process.stderr.write(`deepseek memorize: losses ${s.filter((_, i) => i % 5 === 0).map((l) => l.loss.toFixed(3)).join(' ')}\n`);
  const mem = lines(r.stdout).find((l) => l.event === 'memory') as unknown as Record<string, number>;
  assert.ok(mem.adapter > 0 && mem.activations > mem.activationsCheckpointed);
  const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
  assert.deepEqual(cfg.target_modules, ['o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'q_a_proj', 'q_b_proj', 'kv_a_proj_with_mqa', 'kv_b_proj',
    'shared_experts.gate_proj', 'shared_experts.up_proj', 'shared_experts.down_proj']);
  for (const [q, a] of [['What is 2+2?', 'It is 4.'], ['Capital of France?', 'Paris.'], ['Color of the sky?', 'Blue.']]) {
    const g = aha('generate', '--model', model, '--adapter', out, '--chat', q, '--temperature', '0', '--max-tokens', '16', '--json', '--threads', '2');
    assert.equal(g.code, 0, g.stderr);
    assert.equal(JSON.parse(g.stdout).text, a);
  }
  // the routed experts too, by their own names: checkpointing gives the same losses, the adapter
  // names them as PEFT's target_parameters and loads back for generation
  const experts = ['--targets', 'all-linear,experts.gate_up_proj,experts.down_proj'];
  const a = run('--epochs', '2', ...experts), b = run('--epochs', '2', '--checkpoint-layers', ...experts);
  assert.equal(a.r.code, 0, a.r.stderr);
  assert.deepEqual(steps(b.r.stdout).map((l) => l.loss), steps(a.r.stdout).map((l) => l.loss));
  assert.deepEqual(JSON.parse(readFileSync(join(a.out, 'adapter_config.json'), 'utf8')).target_parameters, ['experts.gate_up_proj', 'experts.down_proj']);
  const ge = aha('generate', '--model', model, '--adapter', a.out, '--chat', 'Hi', '--temperature', '0', '--max-tokens', '4', '--json', '--threads', '2');
  assert.equal(ge.code, 0, ge.stderr);
  const bad = run('--epochs', '1', '--targets', 'q_a_proj,k_proj');
  assert.notEqual(bad.r.code, 0);
  assert.match(bad.r.stderr, /'k_proj' is not a module of this deepseek/);
});

test('--checkpoint-layers gives the same losses as keeping every activation, the memory estimate says what it saves, --dropout is seeded', () => {
  const data = dataset(TINY);
  const run = (...extra: string[]) =>
    aha('train', 'sft', '--model', join(gen, 'qwen3-tiny'), '--data', data, '--out', mkdtempSync(join(tmpdir(), 'aha-train-ckpt-')), '--lr', '1e-2',
      '--epochs', '3', '--batch', '4', '--schedule', 'constant', '--threads', '2', '--json', ...extra);
  const plain = run(), ckpt = run('--checkpoint-layers');
  assert.equal(plain.code, 0, plain.stderr);
  assert.equal(ckpt.code, 0, ckpt.stderr);
  assert.deepEqual(steps(ckpt.stdout).map((l) => l.loss), steps(plain.stdout).map((l) => l.loss));
  const mem = (stdout: string) => lines(stdout).find((l) => l.event === 'memory') as unknown as Record<string, number>;
  const a = mem(plain.stdout), b = mem(ckpt.stdout);
  assert.ok(a.weights > 0 && a.adapter > 0 && a.activations > a.activationsCheckpointed && a.activationsCheckpointed > 0);
  assert.equal(a.total, a.weights + a.activations + a.adapter);
  assert.equal(b.total, b.weights + b.activationsCheckpointed + b.adapter);
  // --dropout: masks differ from no dropout, and are the same on a second run (seeded by the step)
  const d1 = run('--dropout', '0.2'), d2 = run('--dropout', '0.2', '--checkpoint-layers');
  assert.equal(d1.code, 0, d1.stderr);
  assert.deepEqual(steps(d2.stdout).map((l) => l.loss), steps(d1.stdout).map((l) => l.loss));
  assert.notDeepEqual(steps(d1.stdout).map((l) => l.loss), steps(plain.stdout).map((l) => l.loss));
  assert.equal(run('--dropout', '1').code, 2);
  const full = aha('train', 'sft', '--full', '--model', join(gen, 'qwen3-tiny'), '--data', data, '--out', mkdtempSync(join(tmpdir(), 'aha-x-')), '--checkpoint-layers');
  assert.equal(full.code, 2);
  assert.match(full.stderr, /--checkpoint-layers is for LoRA runs/);
});

// The resumed run must read the same batches in the same order (the data order's RNG state and
// position), take the same learning rates (schedule by step) and the same optimizer state.
test('a run killed with SIGKILL, or stopped with Ctrl-C, resumes exactly: the same losses and the same adapter', async () => {
  const rows = Array.from({ length: 8 }, (_, i) => ({ prompt: `Question number ${i}?`, completion: `Answer ${'x'.repeat(i % 3)} ${i * 7}.` }));
  const data = dataset(rows);
  const args = (out: string) => ['train', 'sft', '--model', join(gen, 'qwen2-tiny'), '--data', data, '--out', out, '--lr', '5e-3', '--epochs', '5',
    '--batch', '2', '--grad-accum', '2', '--warmup', '2', '--schedule', 'cosine', '--seed', '5', '--checkpoint-every', '3', '--threads', '2', '--json'];
  const full = mkdtempSync(join(tmpdir(), 'aha-train-full-'));
  const a = aha(...args(full));
  assert.equal(a.code, 0, a.stderr);
  const want = steps(a.stdout);
  assert.equal(want.length, 10);
  assert.equal(want[0].lr, 0, 'warmup starts at 0 (transformers)');
  assert.notEqual(want[3].loss, want[5].loss);

  const killed = mkdtempSync(join(tmpdir(), 'aha-train-killed-'));
  const k = await killAtCheckpoint(args(killed), 3);
  assert.equal(k.signal, 'SIGKILL');
  assert.ok(!existsSync(join(killed, 'adapter_model.safetensors')), 'the run was killed before its end');
  const before = steps(k.stdout);
  assert.ok(before.length >= 3 && before.length < 10, `killed after ${before.length} steps`);
  before.forEach((l, i) => assert.equal(l.loss, want[i].loss));

  const c = aha(...args(killed), '--resume');
  assert.equal(c.code, 0, c.stderr);
  const after = steps(c.stdout);
  assert.deepEqual(after.map((l) => l.step), [4, 5, 6, 7, 8, 9, 10]);
  after.forEach((l) => {
    assert.equal(l.loss, want[l.step - 1].loss, `step ${l.step}: resumed loss ${l.loss}, uninterrupted ${want[l.step - 1].loss}`);
    assert.equal(l.lr, want[l.step - 1].lr);
    assert.equal(l.grad_norm, want[l.step - 1].grad_norm);
  });
  assert.deepEqual(readFileSync(join(killed, 'adapter_model.safetensors')), readFileSync(join(full, 'adapter_model.safetensors')));
  assert.deepEqual(
    readdirSync(join(killed, 'checkpoints')).sort(),
    ['step-000003', 'step-000006', 'step-000009', 'step-000010'],
  );
  // Ctrl-C (SIGINT): the step under way ends, a checkpoint is written, the command exits 0 saying
  // how to go on, and --resume continues exactly
  const stopped = mkdtempSync(join(tmpdir(), 'aha-train-sigint-'));
  const child2 = spawn(process.execPath, [cli, ...args(stopped)], { cwd: root, env: testEnv });
  let got2 = '';
  let err2 = '';
  child2.stderr.on('data', (d: Buffer) => (err2 += d.toString()));
  const code2 = await new Promise<number | null>((res) => {
    child2.stdout.on('data', (d: Buffer) => {
      got2 += d.toString();
      if (steps(got2.slice(0, got2.lastIndexOf('\n') + 1)).some((l) => l.step === 4) && !child2.killed) child2.kill('SIGINT');
    });
    child2.on('exit', (code) => res(code));
  });
  assert.equal(code2, 0, err2);
  const n = steps(got2.slice(0, got2.lastIndexOf('\n') + 1)).length;
  assert.ok(n >= 4 && n < 10, `stopped after ${n} steps`);
  assert.match(err2, new RegExp(`stopped at step ${n}; continue from .*step-${String(n).padStart(6, '0')} with the same command and --resume`));
  const d = aha(...args(stopped), '--resume');
  assert.equal(d.code, 0, d.stderr);
  const rest = steps(d.stdout);
  assert.equal(rest[0].step, n + 1);
  rest.forEach((l) => assert.equal(l.loss, want[l.step - 1].loss));
  assert.deepEqual(readFileSync(join(stopped, 'adapter_model.safetensors')), readFileSync(join(full, 'adapter_model.safetensors')));

  // killed mid-epoch: the checkpoint's position is inside epoch 1's plan
  const state = JSON.parse(readFileSync(join(killed, 'checkpoints/step-000003/trainer_state.json'), 'utf8'));
  assert.deepEqual([state.step, state.epoch, state.batch], [3, 1, 2]);
  assert.equal(typeof state.epochRng, 'number');
});

test('a NaN stops the run with a clear message and leaves the last good checkpoint intact', () => {
  const out = mkdtempSync(join(tmpdir(), 'aha-train-nan-'));
  const data = dataset(TINY);
  const args = ['train', 'sft', '--model', join(gen, 'qwen3-tiny'), '--data', data, '--out', out, '--batch', '2', '--epochs', '20', '--schedule', 'constant',
    '--max-grad-norm', '0', '--checkpoint-every', '1', '--threads', '2', '--json'];
  const r = aha(...args, '--lr', '1e6');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /step \d+: the (loss|gradient) is (NaN|infinite)|made a LoRA weight non-finite/);
  assert.match(r.stderr, /the adapter was not updated/);
  const good = steps(r.stdout);
  assert.ok(good.length >= 1, r.stderr);
  const last = join(out, 'checkpoints', `step-${String(good.length).padStart(6, '0')}`);
  assert.match(r.stderr, new RegExp(`The last good checkpoint is ${last.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.ok(!existsSync(join(out, 'adapter_model.safetensors')), 'no final adapter from a failed run');
  assert.equal(JSON.parse(readFileSync(join(last, 'trainer_state.json'), 'utf8')).step, good.length);
  // the checkpoint is whole: its adapter loads
  const l = aha('logits', '--model', join(gen, 'qwen3-tiny'), '--tokens', '1,2,3', '--adapter', last, '--threads', '2');
  assert.equal(l.code, 0, l.stderr);
  // and a resumed run may lower the learning rate (with a warning: it no longer continues exactly)
  const c = aha(...args, '--lr', '1e-3', '--resume');
  assert.match(c.stderr, /resuming with lr 0\.001 \(was 1000000\): the run no longer continues exactly/);
});

test('bad input: counted warnings for unusable and over-long rows, clear errors for the rest', () => {
  const model = join(gen, 'qwen3-tiny');
  const out = mkdtempSync(join(tmpdir(), 'aha-train-bad-'));
  const data = dataset([
    ...TINY,
    { prompt: 'no completion' },
    { prompt: 'empty', completion: '' },
    'not json',
    { text: 'a' },
    { prompt: 'A long question '.repeat(20), completion: 'A long answer '.repeat(20) },
  ]);
  const base = ['train', 'sft', '--model', model, '--data', data, '--out', out, '--epochs', '1', '--threads', '2', '--json'];
  const r = aha(...base, '--max-len', '48');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /skipped 4 of 9 rows of .*data\.jsonl: line 5: "prompt" and "completion" must both be strings; line 6: "completion" is empty; line 7: not JSON/);
  assert.match(r.stderr, /1 example longer than --max-len 48 tokens was truncated/);
  const target = aha(...base, '--targets', 'q_proj,attn_qkv');
  assert.equal(target.code, 2);
  assert.match(target.stderr, /--targets: unknown module 'attn_qkv' \(the models have: q_proj, /);
  const rank = aha(...base, '--rank', '0');
  assert.equal(rank.code, 2);
  assert.match(rank.stderr, /--rank must be at least 1/);
  const none = aha('train', 'sft', '--model', model, '--data', dataset([{ prompt: 'a' }, 'x']), '--out', out);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no usable examples/);
  const fresh = mkdtempSync(join(tmpdir(), 'aha-train-none-'));
  const resume = aha(...base.map((a) => (a === out ? fresh : a)), '--resume');
  assert.equal(resume.code, 1);
  assert.match(resume.stderr, /--resume: no checkpoint in/);
  const other = aha(...base, '--resume', '--rank', '4');
  assert.equal(other.code, 1);
  assert.match(other.stderr, /--resume: rank 4 differs from the run's 8/);
  const missing = aha('train', 'sft', '--model', model, '--out', out);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--dataset FILE\|ID is required/);
});
