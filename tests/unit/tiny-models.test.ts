// The tiny-model generator (tests/fixtures/make-tiny-models.ts): the same bytes on every run
// (whichever thread makes an output), safetensors headers laid out as the safetensors library
// writes them with the shapes config.json implies, GGUF tensor shapes in ggml order.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { readGguf } from '../../src-main/formats/gguf.ts';
import { makeTinyModels } from '../fixtures/make-tiny-models.ts';

const ONLY = ['qwen3-tiny', 'llama-tiny'];
const dirs: string[] = [];
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'aha-tiny-'));
  dirs.push(d);
  return d;
};
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function digests(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = join(rel, name);
    if (statSync(join(dir, p)).isDirectory()) Object.assign(out, digests(dir, p));
    else if (name !== 'STAMP.json') out[p] = createHash('sha256').update(readFileSync(join(dir, p))).digest('hex');
  }
  return out;
}

let first: string;

test('two runs write identical bytes', async () => {
  first = tmp();
  const second = tmp();
  const made = await makeTinyModels(first, { only: ONLY });
  assert.deepEqual(made.sort(), ['llama-tiny', 'llama-tiny-f32.gguf', 'qwen3-tiny', 'qwen3-tiny-f32.gguf']);
  await makeTinyModels(second, { only: ONLY, serial: true });
  const a = digests(first), b = digests(second);
  assert.ok(Object.keys(a).includes('qwen3-tiny/model.safetensors'));
  assert.deepEqual(b, a);
  // Up to date: nothing is made again.
  assert.deepEqual(await makeTinyModels(first, { only: ONLY }), []);
  await assert.rejects(makeTinyModels(first, { only: ['no-such-model'] }), /unknown tiny model/);
});

interface StEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function safetensorsHeader(path: string): { header: Record<string, StEntry>; size: number; dataStart: number } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header padded to 8 bytes');
  const raw = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  assert.deepEqual(Object.keys(raw)[0], '__metadata__');
  assert.deepEqual(raw.__metadata__, { format: 'pt' });
  delete raw.__metadata__;
  return { header: raw as Record<string, StEntry>, size: buf.length, dataStart: 8 + n };
}

test('safetensors headers parse and their shapes follow config.json', () => {
  for (const model of ONLY) {
    const dir = join(first, model);
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.match(readFileSync(join(dir, 'config.json'), 'utf8'), /"rms_norm_eps": 1e-0[56],/); // Python's float spelling
    const H = cfg.hidden_size as number, V = cfg.vocab_size as number, F = cfg.intermediate_size as number;
    const hd = (cfg.head_dim as number | undefined) ?? H / (cfg.num_attention_heads as number);
    const nq = (cfg.num_attention_heads as number) * hd, nkv = (cfg.num_key_value_heads as number) * hd;
    const { header, size, dataStart } = safetensorsHeader(join(dir, 'model.safetensors'));
    const names = Object.keys(header);
    assert.deepEqual(names, [...names].sort(), 'tensors sorted by name');
    let off = 0;
    for (const n of names) {
      const e = header[n];
      assert.equal(e.dtype, 'F32');
      assert.deepEqual(e.data_offsets, [off, off + e.shape.reduce((a, b) => a * b, 1) * 4], n);
      off = e.data_offsets[1];
    }
    assert.equal(dataStart + off, size);
    const want: Record<string, number[]> = { 'model.embed_tokens.weight': [V, H], 'model.norm.weight': [H] };
    if (!cfg.tie_word_embeddings) want['lm_head.weight'] = [V, H];
    for (let l = 0; l < (cfg.num_hidden_layers as number); l++) {
      const p = `model.layers.${l}.`;
      Object.assign(want, {
        [p + 'input_layernorm.weight']: [H],
        [p + 'post_attention_layernorm.weight']: [H],
        [p + 'self_attn.q_proj.weight']: [nq, H],
        [p + 'self_attn.k_proj.weight']: [nkv, H],
        [p + 'self_attn.v_proj.weight']: [nkv, H],
        [p + 'self_attn.o_proj.weight']: [H, nq],
        [p + 'mlp.gate_proj.weight']: [F, H],
        [p + 'mlp.up_proj.weight']: [F, H],
        [p + 'mlp.down_proj.weight']: [H, F],
      });
      if (cfg.model_type === 'qwen3') Object.assign(want, { [p + 'self_attn.q_norm.weight']: [hd], [p + 'self_attn.k_norm.weight']: [hd] });
    }
    assert.deepEqual(Object.fromEntries(names.map((n) => [n, header[n].shape])), Object.fromEntries(Object.keys(want).sort().map((n) => [n, want[n]])));
  }
});

test('GGUF copies: ggml shape order, rope_freqs for llama3 scaling, no output.weight when tied', () => {
  for (const model of ONLY) {
    const cfg = JSON.parse(readFileSync(join(first, model, 'config.json'), 'utf8')) as Record<string, number & boolean & string>;
    const g = readGguf(join(first, `${model}-f32.gguf`));
    const shape = (n: string) => g.tensors.find((t) => t.name === n)?.shape;
    const hd = cfg.head_dim;
    assert.equal(g.get('general.architecture'), cfg.model_type);
    assert.deepEqual(shape('token_embd.weight'), [cfg.hidden_size, cfg.vocab_size]);
    assert.deepEqual(shape('blk.0.attn_q.weight'), [cfg.hidden_size, cfg.num_attention_heads * hd]);
    assert.deepEqual(shape('blk.1.attn_k.weight'), [cfg.hidden_size, cfg.num_key_value_heads * hd]);
    assert.deepEqual(shape('blk.1.ffn_down.weight'), [cfg.intermediate_size, cfg.hidden_size]);
    assert.equal(shape('output.weight') !== undefined, !cfg.tie_word_embeddings);
    assert.equal(shape('rope_freqs.weight') !== undefined, model === 'llama-tiny');
    if (model === 'llama-tiny') assert.deepEqual(shape('rope_freqs.weight'), [hd / 2]);
    assert.equal((g.get('tokenizer.ggml.tokens') as string[]).length, cfg.vocab_size);
  }
});
