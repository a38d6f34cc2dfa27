// An R1-Distill-Qwen-1.5B-shaped random model as GGUF (hidden 1536, 28 layers, 12 heads / 2 KV
// heads, ffn 8960, vocab 151936, untied, qkv bias), in f16, q8_0 or q4_K_M (llama.cpp's mix:
// q4_K everywhere, q6_K for output.weight and for attn_v / ffn_down in the layers its
// use_more_bits rule picks). Random values: speed does not depend on them.
//
//   node --import tsx bench/make-model.ts f16|q8_0|q4_K_M [out.gguf]
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf, writeGguf, type GgufTensorData } from '../src-main/formats/gguf.ts';
import { GgmlType, type GgufValue } from '../src-main/formats/gguf-types.ts';
import { quantizeRows } from '../src-main/engine/native.ts';

export const SHAPE = { hidden: 1536, layers: 28, heads: 12, kvHeads: 2, ffn: 8960, vocab: 151936 };

const GGML: Record<string, GgmlType> = { f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q4_K: GgmlType.Q4_K, q6_K: GgmlType.Q6_K };
const FILE_TYPE: Record<string, number> = { f16: 1, q8_0: 7, q4_K_M: 15 };

// A pool of random normals; tensors take windows of it at different offsets.
const POOL = (() => {
  const n = 1 << 24;
  const p = new Float32Array(n + (1 << 20));
  let x = 0x9e3779b9;
  for (let i = 0; i < p.length; i += 2) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const u1 = ((x >>> 0) + 0.5) / 4294967296;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const u2 = ((x >>> 0) + 0.5) / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1)) * 0.02;
    p[i] = r * Math.cos(2 * Math.PI * u2);
    p[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return p;
})();

function values(n: number, salt: number): Float32Array {
  const out = new Float32Array(n);
  const win = 1 << 20;
  for (let o = 0, k = salt; o < n; o += win, k++) {
    const start = (k * 7919 * 4099) % (POOL.length - win);
    out.set(POOL.subarray(start, start + Math.min(win, n - o)), o);
  }
  return out;
}

function useMoreBits(i: number, n: number) {
  return i < n / 8 || i >= (7 * n) / 8 || (i - Math.floor(n / 8)) % 3 === 2;
}

export function makeBenchModel(type: 'f16' | 'q8_0' | 'q4_K_M', path: string) {
  const { hidden: H, layers: L, heads, kvHeads, ffn: F, vocab: V } = SHAPE;
  const hd = H / heads;
  const tensors: GgufTensorData[] = [];
  let salt = 0;
  const add = (name: string, shape: number[], t: string) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = values(n, salt++);
    const data = t === 'f32' ? new Uint8Array(x.buffer) : quantizeRows(t, x, shape[0]);
    tensors.push({ name, shape, type: GGML[t], data });
  };
  const mat = (layer: number, name: string) => {
    if (type !== 'q4_K_M') return type;
    if (name === 'attn_v' || name === 'ffn_down') return useMoreBits(layer, L) ? 'q6_K' : 'q4_K';
    return 'q4_K';
  };
  add('token_embd.weight', [H, V], type === 'q4_K_M' ? 'q4_K' : type);
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    add(p + 'attn_norm.weight', [H], 'f32');
    add(p + 'attn_q.weight', [H, heads * hd], mat(l, 'attn_q'));
    add(p + 'attn_q.bias', [heads * hd], 'f32');
    add(p + 'attn_k.weight', [H, kvHeads * hd], mat(l, 'attn_k'));
    add(p + 'attn_k.bias', [kvHeads * hd], 'f32');
    add(p + 'attn_v.weight', [H, kvHeads * hd], mat(l, 'attn_v'));
    add(p + 'attn_v.bias', [kvHeads * hd], 'f32');
    add(p + 'attn_output.weight', [heads * hd, H], mat(l, 'attn_output'));
    add(p + 'ffn_norm.weight', [H], 'f32');
    add(p + 'ffn_gate.weight', [H, F], mat(l, 'ffn_gate'));
    add(p + 'ffn_up.weight', [H, F], mat(l, 'ffn_up'));
    add(p + 'ffn_down.weight', [F, H], mat(l, 'ffn_down'));
  }
  add('output_norm.weight', [H], 'f32');
  add('output.weight', [H, V], type === 'q4_K_M' ? 'q6_K' : type);
  // Norms are 1 + noise (ones would make every layer's RMS norm an identity, untypical).
  for (const t of tensors)
    if (t.name.endsWith('_norm.weight')) new Float32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4).forEach((v, i, a) => (a[i] = 1 + v));
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str('qwen2')],
    ['general.name', gguf.str(`R1-Distill-Qwen-1.5B-shaped random ${type}`)],
    ['general.file_type', gguf.u32(FILE_TYPE[type])],
    ['qwen2.block_count', gguf.u32(L)],
    ['qwen2.context_length', gguf.u32(131072)],
    ['qwen2.embedding_length', gguf.u32(H)],
    ['qwen2.feed_forward_length', gguf.u32(F)],
    ['qwen2.attention.head_count', gguf.u32(heads)],
    ['qwen2.attention.head_count_kv', gguf.u32(kvHeads)],
    ['qwen2.rope.freq_base', gguf.f32(10000)],
    ['qwen2.attention.layer_norm_rms_epsilon', gguf.f32(1e-6)],
  ];
  mkdirSync(dirname(path), { recursive: true });
  writeGguf(path, { metadata: meta, tensors });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const type = process.argv[2] as 'f16' | 'q8_0' | 'q4_K_M';
  if (!FILE_TYPE[type]) {
    console.error('usage: make-model.ts f16|q8_0|q4_K_M [out.gguf]');
    process.exit(2);
  }
  const out = process.argv[3] ?? join(dirname(fileURLToPath(import.meta.url)), 'models', `r1-distill-qwen-1.5b-shape-${type}.gguf`);
  if (existsSync(out)) console.log(`${out} exists`);
  else {
    const t0 = Date.now();
    makeBenchModel(type, out);
    console.log(`${out} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
