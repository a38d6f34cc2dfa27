// The `aha` command end to end on the generated tiny models: JSON outputs, streaming text,
// --help, and clear errors with the right exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aha, root } from './helpers.ts';

const gen = join(root, 'tests/fixtures/generated');

test('aha logits prints the last or every position as JSON, the same for HF and GGUF', () => {
  const hf = aha('logits', '--model', join(gen, 'qwen2-tiny'), '--tokens', '9707,11,1246', '--kv', 'f32');
  assert.equal(hf.code, 0, hf.stderr);
  const a = JSON.parse(hf.stdout) as { tokens: number[]; logits: number[][] };
  assert.deepEqual(a.tokens, [9707, 11, 1246]);
  assert.equal(a.logits.length, 1);
  const all = JSON.parse(aha('logits', '--model', join(gen, 'qwen2-tiny-f32.gguf'), '--tokens', '9707,11,1246', '--all', '--kv', 'f32').stdout);
  assert.equal(all.logits.length, 3);
  assert.equal(all.logits[2].length, a.logits[0].length);
  let maxAbs = 0;
  let maxDiff = 0;
  for (let i = 0; i < a.logits[0].length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(a.logits[0][i]));
    maxDiff = Math.max(maxDiff, Math.abs(a.logits[0][i] - all.logits[2][i]));
  }
  assert.ok(maxDiff / maxAbs < 1e-5, `hf vs gguf last row differ by ${maxDiff / maxAbs}`);
});

test('aha generate streams text and reports JSON with --json', () => {
  const r = aha('generate', '--model', join(gen, 'qwen3-tiny'), '--chat', 'Hello', '--max-tokens', '8', '--temperature', '0', '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(typeof j.text, 'string');
  assert.ok(j.tokens.length >= 1 && j.tokens.length <= 8);
  assert.ok(j.prompt_tokens > 3);
  const again = JSON.parse(aha('generate', '--model', join(gen, 'qwen3-tiny'), '--chat', 'Hello', '--max-tokens', '8', '--temperature', '0', '--json').stdout);
  assert.deepEqual(again.tokens, j.tokens);
  const text = aha('generate', '--model', join(gen, 'llama-tiny'), '--prompt', 'Once upon a time', '-n', '5', '--seed', '3');
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stderr, /tokens at .* t\/s/);
});

test('aha bench reports speed with the bandwidth bound', () => {
  const r = aha('bench', '--model', join(gen, 'qwen2-tiny-q8_0.gguf'), '--pp', '16', '--tg', '4', '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.threads, 2);
  assert.equal(j.pp.tokens, 16);
  assert.ok(j.pp.tps > 0 && j.tg.tps > 0 && j.bandwidth_gbs > 0 && j.tg_fraction_of_bound > 0);
});

test('aha gives clear errors and exit codes', () => {
  const none = aha();
  assert.equal(none.code, 2);
  assert.match(none.stdout, /Commands:/);
  assert.equal(aha('generate', '--help').code, 0);
  const unknown = aha('frobnicate');
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command 'frobnicate'/);
  const flag = aha('logits', '--model', 'x', '--bogus');
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /Unknown option '--bogus'/);
  const missing = aha('logits', '--tokens', '1');
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /--model PATH is required/);
  const nofile = aha('logits', '--model', '/nonexistent.gguf', '--tokens', '1');
  assert.equal(nofile.code, 1);
  assert.match(nofile.stderr, /\/nonexistent.gguf: cannot open/);
  const dir = mkdtempSync(join(tmpdir(), 'aha-cli-'));
  const junk = join(dir, 'junk.gguf');
  writeFileSync(junk, 'definitely not a model');
  const bad = aha('info', '--model', junk);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /junk.gguf: not a GGUF file \(wrong magic\)/);
  const tok = aha('logits', '--model', join(gen, 'qwen2-tiny'), '--tokens', '1,x');
  assert.equal(tok.code, 2);
  assert.match(tok.stderr, /'x' is not a token id/);
  const big = aha('logits', '--model', join(gen, 'qwen2-tiny'), '--tokens', '999999999');
  assert.equal(big.code, 1);
  assert.match(big.stderr, /outside the vocabulary/);
});
