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
  // A bf16 KV cache: close to f32, not equal.
  const b = JSON.parse(aha('logits', '--model', join(gen, 'qwen2-tiny'), '--tokens', '9707,11,1246', '--kv', 'bf16').stdout);
  const d = a.logits[0].reduce((m, x, i) => Math.max(m, Math.abs(x - b.logits[0][i])), 0);
  assert.ok(d > 0 && d / maxAbs < 2e-2, `bf16 cache vs f32: ${d / maxAbs}`);
  assert.match(aha('logits', '--model', join(gen, 'qwen2-tiny'), '--tokens', '1', '--kv', 'q8_0').stderr, /--kv must be f16, bf16 or f32/);
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

test('aha bench decodes at context depth: the latent cache grows by its formula, the expanded form holds K and V', () => {
  const model = join(root, 'tests/fixtures/generated-deepseek/deepseek-v2-lite-tiny-r64');
  const run = (mla: string) => {
    const r = aha('bench', '--model', model, '--pp', '0', '--tg', '0', '--depth', '0,600', '--depth-tg', '4', '--mla', mla, '--threads', '2', '--json');
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as {
      kv_type: string;
      expanded_kv_bytes_per_token: number;
      depths: Array<{ depth: number; tokens: number; tps: number; cacheBytes: number; workspaceBytes: number; slowdown_vs_depth0: number }>;
    };
  };
  const abs = run('absorbed'), exp = run('expanded');
  // 2 layers × (kv_lora_rank 64 + qk_rope 32) × 2 bytes (bf16, the MLA default) per token: the
  // depth, the warm-up token and the 4 timed ones.
  assert.equal(abs.kv_type, 'bf16');
  assert.deepEqual(abs.depths.map((d) => [d.depth, d.tokens, d.cacheBytes]), [[0, 4, 5 * 384], [600, 4, 605 * 384]]);
  assert.deepEqual(exp.depths.map((d) => d.cacheBytes), [5 * 384, 605 * 384]);
  // The per-head K and V a non-MLA cache would hold: 2 layers × 16 heads × (16 + 32 + 16) × 2 bytes.
  assert.equal(abs.expanded_kv_bytes_per_token, 4096);
  assert.ok(abs.depths.every((d) => d.tps > 0) && abs.depths[0].slowdown_vs_depth0 === 1);
  // Expanded decoding rebuilds every context token's K and V: its activations grow with the depth.
  assert.ok(exp.depths[1].workspaceBytes > 600 * 16 * (16 + 32 + 16) * 4, `${exp.depths[1].workspaceBytes}`);
  assert.ok(abs.depths[1].workspaceBytes < exp.depths[1].workspaceBytes / 10);
  // The same depth reached by a real prefill of random tokens holds the same cache.
  const pre = aha('bench', '--model', model, '--pp', '0', '--tg', '0', '--depth', '600', '--depth-tg', '4', '--depth-fill', 'prefill', '--json');
  assert.equal(pre.code, 0, pre.stderr);
  const pj = JSON.parse(pre.stdout);
  assert.equal(pj.depth_fill, 'prefill');
  assert.equal(pj.depths[0].cacheBytes, 605 * 384);
  assert.match(aha('bench', '--model', model, '--depth', '10', '--depth-fill', 'zeros').stderr, /--depth-fill must be random or prefill/);
  const bad = aha('bench', '--model', model, '--depth', '10,x');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--depth must be a comma-separated list of token counts/);
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
