// `aha grad` end to end: the PEFT golden's adapter and sequences through the CLI, the addon and
// the engine, the gradients read back from the safetensors file against transformers + PEFT
// (tests/fixtures/golden/lora), chat rows through the template, and the errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSft } from '../../src-main/train/sft.ts';
import { loadTokenizer, chatTemplateFor } from '../../src-main/engine/open.ts';
import { aha, readSafetensors, root } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');
const goldens = join(root, 'tests/fixtures/golden/lora');

interface Golden {
  loss: number;
  target_tokens: number;
  sequences: { input_ids: number[]; labels: number[] }[];
  grads: Record<string, { shape: number[]; norm: number; idx: number[]; val: number[] }>;
}

test('aha grad writes every LoRA gradient under its PEFT name, matching transformers + PEFT (dense and DeepSeek)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grad-'));
  for (const name of ['qwen2-tiny', 'llama-tiny-f32.gguf', 'deepseek-v3-tiny', 'deepseek-v2-lite-tiny-kv_b.gguf']) {
    const golden = JSON.parse(readFileSync(join(goldens, `${name.replace(/-(f32|kv_b)\.gguf$/, '')}.json`), 'utf8')) as Golden;
    const model = join(name.startsWith('deepseek') ? join(root, 'tests/fixtures/generated-deepseek') : gen, name);
    const sft = join(dir, 'batch.jsonl');
    writeFileSync(sft, golden.sequences.map((s) => JSON.stringify(s)).join('\n') + '\n');
    for (const [dtype, tol] of [['f64', 1e-6], ['f32', 1e-4]] as const) {
      const out = join(dir, `grads-${dtype}.safetensors`);
      const r = aha('grad', '--model', model, '--adapter', join(goldens, name.replace(/-(f32|kv_b)\.gguf$/, '')), '--sft', sft, '--out', out, '--dtype', dtype, '--json', '--threads', '2');
      assert.equal(r.code, 0, r.stderr);
      const j = JSON.parse(r.stdout) as { loss: number; target_tokens: number };
      assert.equal(j.target_tokens, golden.target_tokens);
      assert.ok(Math.abs(j.loss - golden.loss) / golden.loss < tol, `${name} ${dtype}: loss ${j.loss} vs ${golden.loss}`);
      const { tensors, metadata } = readSafetensors(out);
      assert.equal(Number(metadata.loss), j.loss);
      assert.equal(Number(metadata.target_tokens), golden.target_tokens);
      assert.deepEqual(Object.keys(tensors).sort(), Object.keys(golden.grads).sort());
      for (const [k, g] of Object.entries(golden.grads)) {
        const t = tensors[k];
        assert.equal(t.dtype, dtype === 'f64' ? 'F64' : 'F32');
        assert.deepEqual(t.shape, g.shape);
        g.idx.forEach((i, n) => assert.ok(Math.abs(t.values[i] - g.val[n]) <= tol * g.norm, `${name} ${dtype} ${k}[${i}]: ${t.values[i]} vs ${g.val[n]}`));
      }
    }
  }
});

test('SFT rows: pre-tokenized, prompt/completion and chats through the template, loss on the answer only', () => {
  const path = join(gen, 'qwen3-tiny');
  const tokenizer = loadTokenizer(path);
  const tok = { tokenizer, template: chatTemplateFor(tokenizer).template };
  const rows = [
    JSON.stringify({ input_ids: [1, 2, 3] }),
    JSON.stringify({ prompt: 'What is 2+2?', completion: 'It is 4.' }),
    JSON.stringify({ messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello there.' }] }),
  ];
  const [pre, pc, chat] = parseSft(rows.join('\n'), 'x.jsonl', tok);
  assert.deepEqual(pre, { inputIds: [1, 2, 3], labels: [1, 2, 3] });
  for (const [s, answer] of [[pc, 'It is 4.'], [chat, 'Hello there.']] as const) {
    const first = s.labels.findIndex((l) => l !== -100);
    assert.ok(first > 0, 'the prompt carries no loss');
    assert.ok(s.labels.slice(first).every((l, i) => l === s.inputIds[first + i]), 'every answer token carries the loss');
    const answerText = tokenizer.decode(s.inputIds.slice(first));
    assert.ok(answerText.includes(answer), answerText);
    assert.ok(!tokenizer.decode(s.inputIds.slice(0, first)).includes(answer));
  }
  assert.throws(() => parseSft('{"prompt": "a"}\n', 'x.jsonl', tok), /x\.jsonl:1: "prompt" and "completion" must both be strings/);
  assert.throws(() => parseSft('\n{"prompt": "a", "completion": ""}', 'x.jsonl', tok), /x\.jsonl:2: "completion" is empty/);
  assert.throws(() => parseSft('{"messages": [{"role": "user", "content": "a"}]}', 'x.jsonl', tok), /no assistant message/);
  assert.throws(() => parseSft('{"input_ids": [1, 2], "labels": [1]}', 'x.jsonl'), /1 labels for 2 input_ids/);
  assert.throws(() => parseSft('{"text": "a"}', 'x.jsonl'), /needs "input_ids", "messages", or "prompt" and "completion"/);
  assert.throws(() => parseSft('nope', 'x.jsonl'), /x\.jsonl:1: not JSON/);
});

test('aha grad: chat rows run, and bad input gives clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grad-'));
  const sft = join(dir, 'chat.jsonl');
  writeFileSync(sft, JSON.stringify({ prompt: 'What is 2+2?', completion: 'It is 4.' }) + '\n');
  const out = join(dir, 'g.safetensors');
  const ok = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--adapter', join(goldens, 'qwen3-tiny'), '--sft', sft, '--out', out, '--json');
  assert.equal(ok.code, 0, ok.stderr);
  const j = JSON.parse(ok.stdout);
  assert.ok(Number.isFinite(j.loss) && j.target_tokens > 0);
  const missing = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--sft', sft, '--out', out);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--adapter is required/);
  const dtype = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--adapter', dir, '--sft', sft, '--out', out, '--dtype', 'f16');
  assert.equal(dtype.code, 2);
  assert.match(dtype.stderr, /--dtype must be f32 or f64/);
  // an adapter made for another model
  const wrong = aha('grad', '--model', join(gen, 'qwen2-tiny'), '--adapter', join(goldens, 'qwen3-tiny'), '--sft', sft, '--out', out);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /adapter_model\.safetensors: tensor '.*' has shape \[.*\], expected/);
  // rank 0
  const bad = join(dir, 'bad');
  cpSync(join(goldens, 'qwen3-tiny'), bad, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(bad, 'adapter_config.json'), 'utf8'));
  writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify({ ...cfg, r: 0 }));
  const rank = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--adapter', bad, '--sft', sft, '--out', out);
  assert.equal(rank.code, 1);
  assert.match(rank.stderr, /LoRA rank must be at least 1/);
  writeFileSync(join(bad, 'adapter_config.json'), JSON.stringify({ ...cfg, target_modules: ['q_proj', 'attn_qkv'] }));
  const target = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--adapter', bad, '--sft', sft, '--out', out);
  assert.equal(target.code, 1);
  assert.match(target.stderr, /unknown LoRA target module 'attn_qkv'/);
  writeFileSync(sft, JSON.stringify({ input_ids: [1, 2], labels: [-100, -100] }) + '\n');
  const none = aha('grad', '--model', join(gen, 'qwen3-tiny'), '--adapter', join(goldens, 'qwen3-tiny'), '--sft', sft, '--out', out);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /no target tokens/);
});
