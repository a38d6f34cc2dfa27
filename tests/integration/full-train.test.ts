// `aha train sft --full` end to end: a tiny model made from a config (byte-level tokenizer, every
// parameter trained) memorizes a tiny dataset and `aha generate` then writes what it learned; a
// run killed with SIGKILL resumes with exactly the losses and model of a run never interrupted;
// a model trains further from its folder or from a GGUF; bad combinations give clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeByteTokenizer } from '../fixtures/byte-tokenizer.ts';
import { aha, dataset, killAtCheckpoint, lines, readSafetensors, root, steps } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');



const tmp = (name: string) => mkdtempSync(join(tmpdir(), `aha-full-${name}-`));

/** A byte-level tokenizer and a tiny Qwen3 config (tied, q/k norms) sized for it. */
function fresh(): { tokenizer: string; config: string } {
  const dir = tmp('fresh');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      architectures: ['Qwen3ForCausalLM'], vocab_size: 259, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4,
      num_key_value_heads: 2, head_dim: 16, max_position_embeddings: 256, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: true,
      bos_token_id: 256, eos_token_id: 258, initializer_range: 0.02,
    }),
  );
  return { tokenizer: writeByteTokenizer(join(dir, 'tokenizer')), config };
}


const TINY = [
  { prompt: 'What is 2+2?', completion: 'It is 4.' },
  { prompt: 'Capital of France?', completion: 'Paris.' },
  { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello there.' }, { role: 'user', content: 'Bye' }, { role: 'assistant', content: 'Goodbye!' }] },
  { prompt: 'Color of the sky?', completion: 'Blue.' },
];

const greedy = (model: string, chat: string) => {
  const g = aha('generate', '--model', model, '--chat', chat, '--temperature', '0', '--max-tokens', '24', '--json', '--threads', '2');
  assert.equal(g.code, 0, g.stderr);
  return JSON.parse(g.stdout) as { text: string; finish_reason: string };
};

test('a tiny model made from a config memorizes a tiny dataset with every parameter trained, then answers through aha generate', () => {
  const { tokenizer, config } = fresh();
  const out = tmp('out');
  const data = dataset(TINY);
  const t0 = Date.now();
  const r = aha('train', 'sft', '--full', '--config', config, '--tokenizer', tokenizer, '--data', data, '--out', out, '--lr', '1e-2', '--epochs', '60',
    '--batch', '4', '--schedule', 'constant', '--seed', '3', '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  const s = steps(r.stdout);
  assert.equal(s.length, 60);
  assert.ok(s[0].loss > 5, `first loss ${s[0].loss}: a fresh model over 259 tokens starts near ln 259 = 5.56`);
  assert.ok(s[59].loss < 0.02, `last loss ${s[59].loss}: not memorized`);
  const done = lines(r.stdout).at(-1)!;
  assert.equal(done.event, 'done');
  assert.equal(done.model, out);
  process.stderr.write(`full memorize: ${(Date.now() - t0) / 1000}s, losses ${s.filter((_, i) => i % 10 === 0).map((l) => l.loss.toFixed(3)).join(' ')}\n`);
  // OUT is a model folder: the config, every parameter (the norms moved off their initial 1), the tokenizer
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) assert.ok(existsSync(join(out, f)), f);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.architectures[0], cfg.vocab_size, cfg.tie_word_embeddings, cfg.eos_token_id], ['Qwen3ForCausalLM', 259, true, 258]);
  const { tensors } = readSafetensors(join(out, 'model.safetensors'));
  assert.equal(Object.keys(tensors).length, 1 + 2 * 11 + 1);
  assert.ok(!('lm_head.weight' in tensors));
  for (const n of ['model.norm.weight', 'model.layers.0.self_attn.q_norm.weight', 'model.layers.1.post_attention_layernorm.weight'])
    assert.ok(tensors[n].values.some((x) => x !== 1), `${n} was not trained`);
  // the saved model writes each memorized answer greedily, and stops at <|im_end|>
  for (const [q, a] of [['What is 2+2?', 'It is 4.'], ['Capital of France?', 'Paris.'], ['Color of the sky?', 'Blue.']]) {
    const g = greedy(out, q);
    assert.equal(g.text, a);
    assert.equal(g.finish_reason, 'stop');
  }
  // and trains further from its folder: the next run starts where this one ended
  const more = tmp('more');
  const c = aha('train', 'sft', '--full', '--model', out, '--data', data, '--out', more, '--lr', '1e-3', '--epochs', '2', '--batch', '4', '--threads', '2', '--json');
  assert.equal(c.code, 0, c.stderr);
  assert.ok(steps(c.stdout)[0].loss < 0.02, `continued from ${steps(c.stdout)[0].loss}`);
  assert.equal(greedy(more, 'Capital of France?').text, 'Paris.');
});

// The resumed run reads the same batches (the data order's RNG state and position), takes the
// same learning rates and starts from the same weights and optimizer state.
test('a full run killed with SIGKILL resumes exactly: the same losses and the same model', async () => {
  const { tokenizer, config } = fresh();
  const rows = Array.from({ length: 8 }, (_, i) => ({ prompt: `Question number ${i}?`, completion: `Answer ${'x'.repeat(i % 3)} ${i * 7}.` }));
  const data = dataset(rows);
  const args = (out: string) => ['train', 'sft', '--full', '--config', config, '--tokenizer', tokenizer, '--data', data, '--out', out, '--lr', '5e-3',
    '--epochs', '5', '--batch', '2', '--grad-accum', '2', '--warmup', '2', '--schedule', 'cosine', '--weight-decay', '0.1', '--seed', '5',
    '--checkpoint-every', '3', '--threads', '2', '--json'];
  const full = tmp('uninterrupted');
  const a = aha(...args(full));
  assert.equal(a.code, 0, a.stderr);
  const want = steps(a.stdout);
  assert.equal(want.length, 10);

  const killed = tmp('killed');
  const k = await killAtCheckpoint(args(killed), 3);
  assert.equal(k.signal, 'SIGKILL');
  assert.ok(!existsSync(join(killed, 'model.safetensors')), 'the run was killed before its end');
  // a checkpoint is a model folder too
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'optimizer.safetensors', 'optimizer.json', 'trainer_state.json'])
    assert.ok(existsSync(join(killed, 'checkpoints/step-000003', f)), f);

  const c = aha(...args(killed), '--resume');
  assert.equal(c.code, 0, c.stderr);
  const after = steps(c.stdout);
  assert.equal(after[0].step, 4);
  assert.equal(after.at(-1)!.step, 10);
  after.forEach((l) => {
    assert.equal(l.loss, want[l.step - 1].loss, `step ${l.step}: resumed loss ${l.loss}, uninterrupted ${want[l.step - 1].loss}`);
    assert.equal(l.lr, want[l.step - 1].lr);
    assert.equal(l.grad_norm, want[l.step - 1].grad_norm);
  });
  assert.deepEqual(readFileSync(join(killed, 'model.safetensors')), readFileSync(join(full, 'model.safetensors')));
  assert.deepEqual(readdirSync(join(killed, 'checkpoints')).sort(), ['step-000003', 'step-000006', 'step-000009', 'step-000010']);
  // a LoRA run cannot resume a full one
  const lora = aha('train', 'sft', '--model', full, '--data', data, '--out', killed, '--threads', '2', '--resume');
  assert.equal(lora.code, 1);
  assert.match(lora.stderr, /full false differs from the run's true/);
});

test('full training from a GGUF: the tokenizer comes from its vocabulary, the result is an HF folder', () => {
  const out = tmp('gguf');
  const data = dataset(TINY.slice(0, 2));
  const r = aha('train', 'sft', '--full', '--model', join(gen, 'qwen3-tiny-f32.gguf'), '--data', data, '--out', out, '--lr', '1e-3', '--epochs', '1',
    '--batch', '2', '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(steps(r.stdout).length, 1);
  const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.deepEqual([cfg.architectures[0], cfg.vocab_size, cfg.head_dim], ['Qwen3ForCausalLM', 151936, 32]);
  const tok = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'));
  assert.equal(tok.model.type, 'BPE');
  const g = aha('generate', '--model', out, '--prompt', 'Hello', '--temperature', '0', '--max-tokens', '4', '--json', '--threads', '2');
  assert.equal(g.code, 0, g.stderr);
});

test('full training: clear errors for options that do not fit', () => {
  const { tokenizer, config } = fresh();
  const data = dataset(TINY);
  const out = tmp('errors');
  const base = ['train', 'sft', '--data', data, '--out', out, '--threads', '2'];
  const cases: [string[], number, RegExp][] = [
    [['--full', '--config', config, '--tokenizer', tokenizer, '--rank', '4'], 2, /--rank: LoRA options, but --full trains every parameter/],
    [['--full', '--config', config], 2, /--config needs --tokenizer DIR/],
    [['--full'], 2, /--full needs one of --model PATH .* and --config CONFIG.json/],
    [['--full', '--model', join(gen, 'qwen3-tiny'), '--config', config], 2, /--full needs one of/],
    [['--model', join(gen, 'qwen3-tiny'), '--config', config], 2, /--config is for full training \(--full\)/],
    [['--full', '--config', config, '--tokenizer', join(gen, 'qwen3-tiny')], 1, /the tokenizer has \d+ tokens, more than the model's vocab_size 259/],
    [['--full', '--model', join(gen, 'llama-tiny-f32.gguf')], 1, /rope_freqs\.weight.*start from the HF folder/],
  ];
  for (const [args, code, message] of cases) {
    const r = aha(...base, ...args);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});
