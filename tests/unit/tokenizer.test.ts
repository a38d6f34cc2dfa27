// Tokenizers: the real Qwen and DeepSeek tokenizer.json files give transformers' ids (from the
// goldens), the GGUF's embedded vocabulary gives the same tokenizer back, streaming decode never
// splits a character, and bad files fail clearly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { readGguf } from '../../src-main/formats/gguf.ts';
import { Tokenizer } from '../../src-main/tokenizer/tokenizer.ts';
import { StreamDecoder } from '../../src-main/tokenizer/detokenizer.ts';

const root = resolve(import.meta.dirname, '../..');
const gen = join(root, 'tests/fixtures/generated');
const golden = (m: string) => JSON.parse(readFileSync(join(root, 'tests/fixtures/golden', m + '.json'), 'utf8')) as {
  sequences: Array<{ text: string; chat: boolean; tokens: number[] }>;
};

const CORPUS = [
  'Hello world! How are you?',
  '数学是科学的皇后。我们来计算 17 × 23 = 391。',
  'Emoji 🤔🎉👍🏽 and accents: café, naïve, Ünïcödé',
  'def f(x):\n\tif x > 1234567:\n        return x ** 2  # comment\n',
  'LaTeX: $\\frac{a}{b} + \\sqrt{x^2 + y^2} = \\boxed{42}$',
  '<think>\nLet me reason.\n</think>\n\nThe answer is 7.',
  '   leading spaces and trailing   \n\n\n',
];

for (const [model, name] of [['qwen2-tiny', 'qwen'], ['llama-tiny', 'deepseek']] as const) {
  test(`${name} tokenizer.json gives transformers' ids`, () => {
    const tok = Tokenizer.fromHfFolder(join(gen, model));
    for (const s of golden(model).sequences) {
      assert.deepEqual(tok.encode(s.text, { addSpecialTokens: !s.chat }), s.tokens, JSON.stringify(s.text));
      assert.equal(tok.decode(s.tokens, { skipSpecialTokens: false }).replace(/^<｜begin▁of▁sentence｜>/, ''), s.text.replace(/^<｜begin▁of▁sentence｜>/, ''));
    }
  });

  test(`${name} tokenizer from the GGUF equals the one from tokenizer.json`, () => {
    const hf = Tokenizer.fromHfFolder(join(gen, model));
    const gg = Tokenizer.fromGguf(readGguf(join(gen, `${model}-f32.gguf`)));
    for (const text of [...CORPUS, ...golden(model).sequences.map((s) => s.text)]) {
      const ids = hf.encode(text);
      assert.deepEqual(gg.encode(text), ids, JSON.stringify(text));
      assert.equal(gg.decode(ids), hf.decode(ids));
    }
    // Real Qwen GGUFs name a BOS token that is never added: what matters is the same encoding.
    assert.equal(gg.addBos, hf.addBos);
    if (hf.bosId !== undefined) assert.equal(gg.bosId, hf.bosId);
    assert.deepEqual(gg.eosIds, hf.eosIds);
    assert.equal(gg.chatTemplate, hf.chatTemplate);
  });
}

test('streaming decode never emits half a character and concatenates to the full text', () => {
  const tok = Tokenizer.fromHfFolder(join(gen, 'qwen3-tiny'));
  for (const text of CORPUS) {
    const ids = tok.encode(text);
    const d = new StreamDecoder(tok);
    let out = '';
    for (const id of ids) {
      const piece = d.push(id);
      assert.ok(!piece.includes('\uFFFD'), `broken character in ${JSON.stringify(piece)}`);
      out += piece;
    }
    out += d.flush();
    assert.equal(out, tok.decode(ids, { skipSpecialTokens: true }));
  }
  // A long run crosses the decoder's window reset.
  const long = CORPUS.join(' ').repeat(8);
  const ids = tok.encode(long);
  const d = new StreamDecoder(tok);
  assert.equal(ids.map((i) => d.push(i)).join('') + d.flush(), tok.decode(ids, { skipSpecialTokens: true }));
});

test('malformed tokenizer files fail with the file named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-tok-'));
  writeFileSync(join(dir, 'tokenizer.json'), '{"model": ');
  assert.throws(() => Tokenizer.fromHfFolder(dir), /tokenizer\.json: invalid JSON/);
  writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
  assert.throws(() => Tokenizer.fromHfFolder(dir), /tokenizer\.json has no model\.vocab/);
  const empty = mkdtempSync(join(tmpdir(), 'aha-tok-'));
  assert.throws(() => Tokenizer.fromHfFolder(empty), /no tokenizer\.json/);
  copyFileSync(join(gen, 'qwen2-tiny/tokenizer.json'), join(dir, 'tokenizer.json'));
  writeFileSync(join(dir, 'tokenizer_config.json'), '[1,2');
  assert.throws(() => Tokenizer.fromHfFolder(dir), /tokenizer_config\.json: invalid JSON/);
});
