// The SFT data path of `aha train sft`: the loss on every assistant turn of a chat (and nothing
// else), length-bucketed epoch plans drawn from a saved RNG state, truncation to --max-len.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { chatTemplateFor, loadTokenizer } from '../../src-main/engine/open.ts';
import { IGNORE, readSftExamples, sftSequence } from '../../src-main/train/sft.ts';
import { planEpoch, Rng, truncateExamples } from '../../src-main/train/sft-run.ts';

const gen = join(resolve(import.meta.dirname, '../..'), 'tests/fixtures/generated');

// The learned spans of a sequence, decoded.
function learned(model: string, messages: unknown[]): { spans: string[]; context: string } {
  const tokenizer = loadTokenizer(join(gen, model));
  const s = sftSequence({ messages }, { tokenizer, template: chatTemplateFor(tokenizer).template });
  const spans: string[] = [];
  let context = '';
  let cur: number[] = [];
  s.inputIds.forEach((id, i) => {
    if (s.labels[i] !== IGNORE) cur.push(id);
    else {
      context += tokenizer.decode([id]);
      if (cur.length) spans.push(tokenizer.decode(cur)), (cur = []);
    }
  });
  if (cur.length) spans.push(tokenizer.decode(cur));
  return { spans, context };
}

test('chats: every assistant turn carries the loss, with its end of turn; nothing else does', () => {
  const chat = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello there.' },
    { role: 'user', content: 'Bye' },
    { role: 'assistant', content: 'Goodbye!' },
  ];
  // qwen3's template renders an empty think block only on the final turn; DeepSeek's renders every turn alike
  const q = learned('qwen3-tiny', chat);
  assert.deepEqual(q.spans, ['Hello there.<|im_end|>\n', '<think>\n\n</think>\n\nGoodbye!<|im_end|>\n']);
  assert.ok(q.context.includes('Be brief.') && q.context.includes('Bye') && !q.context.includes('Goodbye'));
  const l = learned('llama-tiny', chat);
  assert.deepEqual(l.spans, ['Hello there.<｜end▁of▁sentence｜>', 'Goodbye!<｜end▁of▁sentence｜>']);
  // DeepSeek-R1's template drops reasoning from the turns it renders and opens the generation prompt
  // with "<think>\n": earlier turns are learned as rendered, the final one after the generation
  // prompt with its reasoning, as the model is asked for it
  const reasoning = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: '<think>\nGreeting.\n</think>\n\nHello there.' },
    { role: 'user', content: 'Bye' },
    { role: 'assistant', content: '<think>\nBye.\n</think>\n\nGoodbye!' },
  ];
  const r1 = learned('r1-scripted-f16.gguf', reasoning);
  assert.deepEqual(r1.spans, ['\n\nHello there.<｜end▁of▁sentence｜>', 'Bye.\n</think>\n\nGoodbye!<｜end▁of▁sentence｜>']);
  assert.ok(r1.context.endsWith('<｜User｜>Bye<｜Assistant｜><think>\n'), r1.context);
  // a chat that ends with a user message: its last turn is context
  assert.deepEqual(learned('llama-tiny', chat.slice(0, 4)).spans, ['Hello there.<｜end▁of▁sentence｜>']);
  assert.throws(() => learned('llama-tiny', [{ role: 'user', content: 'a' }, { role: 'assistant', content: '' }]), /messages\[1\]: the assistant message is empty/);
});

test('readSftExamples keeps the usable rows and says why the others were skipped', () => {
  const text = ['{"input_ids": [1, 2, 3]}', '{"prompt": "a"}', '', 'nope', '{"input_ids": [1, 2], "labels": [-100, -100]}'].join('\n');
  const { examples, skipped } = readSftExamples(text);
  assert.deepEqual(examples.map((e) => e.line), [1]);
  assert.deepEqual(skipped.map((s) => s.line), [2, 4, 5]);
  assert.match(skipped[0].reason, /text rows need the model's tokenizer|"prompt" and "completion"/);
  assert.match(skipped[1].reason, /not JSON/);
  assert.match(skipped[2].reason, /no token carries the loss/);
});

test('epoch plans: every example once, similar lengths together, the same plan from the same RNG state', () => {
  const lengths = Array.from({ length: 37 }, (_, i) => ((i * 7919) % 101) + 1);
  const a = planEpoch(lengths, 4, new Rng(12345));
  const b = planEpoch(lengths, 4, new Rng(12345));
  const c = planEpoch(lengths, 4, new Rng(54321));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(a.flat().sort((x, y) => x - y), lengths.map((_, i) => i));
  assert.equal(a.length, 10);
  // within a batch the lengths are sorted (bucketed), and the spread is far below the data's
  const spread = (batch: number[]) => Math.max(...batch.map((i) => lengths[i])) - Math.min(...batch.map((i) => lengths[i]));
  const mean = a.reduce((s, x) => s + spread(x), 0) / a.length;
  assert.ok(mean < 30, `mean spread in a batch ${mean}`);
  // the state after drawing is what the next epoch starts from
  const r = new Rng(7);
  planEpoch(lengths, 4, r);
  const next = r.state;
  assert.deepEqual(planEpoch(lengths, 4, new Rng(next)), planEpoch(lengths, 4, (() => { const x = new Rng(7); planEpoch(lengths, 4, x); return x; })()));
});

test('truncation to --max-len keeps the start, drops examples left without an answer token', () => {
  const ex = [
    { inputIds: [1, 2, 3], labels: [1, 2, 3] },
    { inputIds: [1, 2, 3, 4, 5, 6], labels: [IGNORE, IGNORE, 3, 4, 5, 6] },
    { inputIds: [1, 2, 3, 4, 5, 6], labels: [IGNORE, IGNORE, IGNORE, IGNORE, 5, 6] },
  ];
  const r = truncateExamples(ex, 4);
  assert.equal(r.truncated, 2);
  assert.equal(r.dropped, 1);
  assert.deepEqual(r.kept[1], { inputIds: [1, 2, 3, 4], labels: [IGNORE, IGNORE, 3, 4] });
});
