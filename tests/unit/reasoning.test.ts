import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReasoningSplitter, splitReasoning, promptOpensThink } from '../../src-main/services/chat/reasoning.ts';

/** What the split must be, written independently of the streaming state machine. */
function expected(completion: string, opened: boolean): { reasoning: string; content: string } {
  let rest = completion;
  if (!opened) {
    const t = rest.trimStart();
    if (!t.startsWith('<think>')) return { reasoning: '', content: t };
    rest = t.slice('<think>'.length);
  }
  const at = rest.indexOf('</think>');
  if (at < 0) return { reasoning: rest.trim(), content: '' };
  return { reasoning: rest.slice(0, at).trim(), content: rest.slice(at + '</think>'.length).trimStart() };
}

function streamed(completion: string, opened: boolean, cuts: number[]) {
  const s = new ReasoningSplitter(opened);
  let reasoning = '';
  let content = '';
  let prev = 0;
  for (const c of [...cuts, completion.length]) {
    const d = s.push(completion.slice(prev, c));
    reasoning += d.reasoning;
    content += d.content;
    prev = c;
  }
  const d = s.finish();
  return { reasoning: reasoning + d.reasoning, content: content + d.content };
}

function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
}

const pieces = ['<think>', '</think>', '<', '</', '<th', 'think', '>', '\n', '\n\n', ' ', 'Let me see', ' 2+2', '=4', 'The answer is **4**.', '$x^2$', '思考', '😀', '</thin', 'k>', 'a<b', 'x</y'];

test('split is independent of chunk boundaries (random completions, random cuts)', () => {
  const r = rng(42);
  for (let trial = 0; trial < 3000; trial++) {
    const n = 1 + Math.floor(r() * 10);
    let completion = '';
    for (let i = 0; i < n; i++) completion += pieces[Math.floor(r() * pieces.length)];
    const opened = r() < 0.5;
    const cuts = [...new Set(Array.from({ length: Math.floor(r() * 8) }, () => Math.floor(r() * completion.length)))].sort((a, b) => a - b);
    const want = expected(completion, opened);
    assert.deepEqual(streamed(completion, opened, cuts), want, `completion ${JSON.stringify(completion)} opened=${opened} cuts=${cuts}`);
    // One character at a time: the hardest split.
    assert.deepEqual(streamed(completion, opened, [...completion].map((_, i) => i)), want);
  }
});

test('the R1 shapes', () => {
  assert.deepEqual(splitReasoning('<think>\nLet me reason.\n</think>\n\nThe answer is 7.'), { reasoning: 'Let me reason.', content: 'The answer is 7.', thinking: false });
  // Template-forced: the prompt ended with "<think>\n"; only </think> appears.
  assert.deepEqual(splitReasoning('Let me reason.\n</think>\n\nThe answer is 7.', true), { reasoning: 'Let me reason.', content: 'The answer is 7.', thinking: false });
  // Still thinking when the stream stops.
  assert.deepEqual(splitReasoning('Hmm, so', true), { reasoning: 'Hmm, so', content: '', thinking: true });
  // No reasoning at all.
  assert.deepEqual(splitReasoning('Just an answer.'), { reasoning: '', content: 'Just an answer.', thinking: false });
  // A literal "<" that is not a tag is not swallowed.
  assert.deepEqual(splitReasoning('a < b</think>ok', true), { reasoning: 'a < b', content: 'ok', thinking: false });
});

test('thinking flag follows the stream', () => {
  const s = new ReasoningSplitter(true);
  assert.equal(s.thinking, true);
  assert.deepEqual(s.push('step one</th'), { reasoning: 'step one', content: '' });
  assert.equal(s.thinking, true);
  assert.deepEqual(s.push('ink>Done'), { reasoning: '', content: 'Done' });
  assert.equal(s.thinking, false);
});

test('promptOpensThink', () => {
  assert.equal(promptOpensThink('<｜User｜>hi<｜Assistant｜><think>\n'), true);
  assert.equal(promptOpensThink('<｜User｜>hi<｜Assistant｜>'), false);
  assert.equal(promptOpensThink('<|im_start|>assistant\n<think>\n\n</think>\n\n'), false);
  assert.equal(promptOpensThink('<think>x</think> then <think>'), true);
});
