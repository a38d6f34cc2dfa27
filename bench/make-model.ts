// The benchmark models, random GGUF files in f16, q8_0 or q4_K_M (llama.cpp's mix: q4_K
// everywhere, q6_K for output.weight and for attn_v / ffn_down in the layers its use_more_bits
// rule picks, q5_0 where a row is not a whole number of 256-blocks). Random values: speed does
// not depend on them.
//  - dense: R1-Distill-Qwen-1.5B-shaped (hidden 1536, 28 layers, 12 heads / 2 KV heads, ffn 8960,
//    vocab 151936, untied, qkv bias), issue 2's benchmark;
//  - moe: a scaled-down DeepSeek-V3 (deepseek2 in llama.cpp's layout with attn_kv_b): hidden 1024,
//    16 layers (the first dense, ffn 2816), 16 heads, q_lora_rank 384, kv_lora_rank 256, qk_nope 64,
//    qk_rope 32, v 64, 64 routed experts (ffn 256) top-6 with sigmoid routing, 2 shared experts,
//    vocab 32256: about 0.9 B parameters, 0.18 B active. Issue 4's benchmark.
//  - qwen0.5b: Qwen2-0.5B-shaped (hidden 896, 24 layers, 14 heads / 2 KV heads, ffn 4864, vocab
//    151936, tied), issue 5's training benchmark.
//
//   node --import tsx bench/make-model.ts f16|q8_0|q4_K_M [dense|moe|qwen0.5b] [out.gguf]
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf, writeGguf, type GgufTensorData } from '../src-main/formats/gguf.ts';
import { GgmlType, type GgufValue } from '../src-main/formats/gguf-types.ts';
import { quantizeRows } from '../src-main/engine/native.ts';

export const SHAPE = { hidden: 1536, layers: 28, heads: 12, kvHeads: 2, ffn: 8960, vocab: 151936, tied: false };
/** Qwen2-0.5B (tied embeddings): issue 5's training benchmark. */
export const SHAPE_05B = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 151936, tied: true };
export const MOE_SHAPE = {
  hidden: 1024, layers: 16, denseLayers: 1, ffn: 2816, heads: 16, qLoraRank: 384, kvLoraRank: 256, qkNope: 64, qkRope: 32, vHead: 64,
  experts: 64, expertFfn: 256, topK: 6, shared: 2, vocab: 32256,
};
export type BenchType = 'f16' | 'q8_0' | 'q4_K_M';
export type BenchShape = 'dense' | 'moe' | 'qwen0.5b';
export function benchModelPath(type: BenchType, shape: BenchShape = 'dense'): string {
  const name = { dense: 'r1-distill-qwen-1.5b-shape', moe: 'deepseek-moe-0.9b-shape', 'qwen0.5b': 'qwen2-0.5b-shape' }[shape];
  return join(dirname(fileURLToPath(import.meta.url)), 'models', `${name}-${type}.gguf`);
}

const GGML: Record<string, GgmlType> = {
  f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q5_0: GgmlType.Q5_0, q4_K: GgmlType.Q4_K, q6_K: GgmlType.Q6_K,
};
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

/** Random tensors, added in order; norms (names ending _norm.weight) are 1 + noise. */
function tensorList() {
  const tensors: GgufTensorData[] = [];
  let salt = 0;
  const add = (name: string, shape: number[], t: string) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const x = values(n, salt++);
    if (name.endsWith('_norm.weight')) x.forEach((v, i, a) => (a[i] = 1 + v));
    // llama-quantize's fallback for rows that are not whole 256-blocks (q4_K → q5_0, q6_K → q8_0).
    if (shape[0] % 256 && (t === 'q4_K' || t === 'q6_K')) t = t === 'q4_K' ? 'q5_0' : 'q8_0';
    const data = t === 'f32' ? new Uint8Array(x.buffer) : quantizeRows(t, x, shape[0]);
    tensors.push({ name, shape, type: GGML[t], data });
  };
  return { tensors, add };
}

export function makeBenchModel(type: BenchType, path: string, shape: BenchShape = 'dense') {
  if (shape === 'moe') return makeMoeBenchModel(type, path);
  const { hidden: H, layers: L, heads, kvHeads, ffn: F, vocab: V, tied } = shape === 'dense' ? SHAPE : SHAPE_05B;
  const hd = H / heads;
  const { tensors, add } = tensorList();
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
  if (!tied) add('output.weight', [H, V], type === 'q4_K_M' ? 'q6_K' : type);
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str('qwen2')],
    ['general.name', gguf.str(`${shape === 'dense' ? 'R1-Distill-Qwen-1.5B' : 'Qwen2-0.5B'}-shaped random ${type}`)],
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

function makeMoeBenchModel(type: BenchType, path: string) {
  const S = MOE_SHAPE, H = S.hidden, L = S.layers, nh = S.heads, qk = S.qkNope + S.qkRope;
  const { tensors, add } = tensorList();
  const mat = (layer: number, name: string) => {
    if (type !== 'q4_K_M') return type;
    if (name.startsWith('ffn_down')) return useMoreBits(layer, L) ? 'q6_K' : 'q4_K';
    return 'q4_K';
  };
  add('token_embd.weight', [H, S.vocab], type === 'q4_K_M' ? 'q4_K' : type);
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    add(p + 'attn_norm.weight', [H], 'f32');
    add(p + 'attn_q_a.weight', [H, S.qLoraRank], mat(l, 'attn_q_a'));
    add(p + 'attn_q_a_norm.weight', [S.qLoraRank], 'f32');
    add(p + 'attn_q_b.weight', [S.qLoraRank, nh * qk], mat(l, 'attn_q_b'));
    add(p + 'attn_kv_a_mqa.weight', [H, S.kvLoraRank + S.qkRope], mat(l, 'attn_kv_a_mqa'));
    add(p + 'attn_kv_a_norm.weight', [S.kvLoraRank], 'f32');
    add(p + 'attn_kv_b.weight', [S.kvLoraRank, nh * (S.qkNope + S.vHead)], mat(l, 'attn_kv_b'));
    add(p + 'attn_output.weight', [nh * S.vHead, H], mat(l, 'attn_output'));
    add(p + 'ffn_norm.weight', [H], 'f32');
    if (l < S.denseLayers) {
      add(p + 'ffn_gate.weight', [H, S.ffn], mat(l, 'ffn_gate'));
      add(p + 'ffn_up.weight', [H, S.ffn], mat(l, 'ffn_up'));
      add(p + 'ffn_down.weight', [S.ffn, H], mat(l, 'ffn_down'));
      continue;
    }
    add(p + 'ffn_gate_inp.weight', [H, S.experts], 'f32');  // the converter and llama-quantize keep the router f32
    add(p + 'exp_probs_b.bias', [S.experts], 'f32');
    add(p + 'ffn_gate_exps.weight', [H, S.expertFfn, S.experts], mat(l, 'ffn_gate_exps'));
    add(p + 'ffn_up_exps.weight', [H, S.expertFfn, S.experts], mat(l, 'ffn_up_exps'));
    add(p + 'ffn_down_exps.weight', [S.expertFfn, H, S.experts], mat(l, 'ffn_down_exps'));
    add(p + 'ffn_gate_shexp.weight', [H, S.shared * S.expertFfn], mat(l, 'ffn_gate_shexp'));
    add(p + 'ffn_up_shexp.weight', [H, S.shared * S.expertFfn], mat(l, 'ffn_up_shexp'));
    add(p + 'ffn_down_shexp.weight', [S.shared * S.expertFfn, H], mat(l, 'ffn_down_shexp'));
  }
  add('output_norm.weight', [H], 'f32');
  add('output.weight', [H, S.vocab], type === 'q4_K_M' ? 'q6_K' : type);
  const a = 'deepseek2';
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(a)],
    ['general.name', gguf.str(`DeepSeek-MoE-0.9B-shaped random ${type}`)],
    ['general.file_type', gguf.u32(FILE_TYPE[type])],
    [`${a}.block_count`, gguf.u32(L)],
    [`${a}.context_length`, gguf.u32(163840)],
    [`${a}.embedding_length`, gguf.u32(H)],
    [`${a}.feed_forward_length`, gguf.u32(S.ffn)],
    [`${a}.attention.head_count`, gguf.u32(nh)],
    [`${a}.attention.head_count_kv`, gguf.u32(nh)],
    [`${a}.rope.freq_base`, gguf.f32(10000)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(1e-6)],
    [`${a}.expert_used_count`, gguf.u32(S.topK)],
    [`${a}.leading_dense_block_count`, gguf.u32(S.denseLayers)],
    [`${a}.vocab_size`, gguf.u32(S.vocab)],
    [`${a}.attention.q_lora_rank`, gguf.u32(S.qLoraRank)],
    [`${a}.attention.kv_lora_rank`, gguf.u32(S.kvLoraRank)],
    [`${a}.attention.key_length`, gguf.u32(qk)],
    [`${a}.attention.value_length`, gguf.u32(S.vHead)],
    [`${a}.expert_feed_forward_length`, gguf.u32(S.expertFfn)],
    [`${a}.expert_count`, gguf.u32(S.experts)],
    [`${a}.expert_shared_count`, gguf.u32(S.shared)],
    [`${a}.expert_weights_scale`, gguf.f32(2.5)],
    [`${a}.expert_weights_norm`, gguf.bool(true)],
    [`${a}.expert_gating_func`, gguf.u32(2)],
    [`${a}.rope.dimension_count`, gguf.u32(S.qkRope)],
  ];
  mkdirSync(dirname(path), { recursive: true });
  writeGguf(path, { metadata: meta, tensors });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const type = process.argv[2] as BenchType;
  const shape = (process.argv[3] ?? 'dense') as BenchShape;
  if (!FILE_TYPE[type] || !['dense', 'moe', 'qwen0.5b'].includes(shape)) {
    console.error('usage: make-model.ts f16|q8_0|q4_K_M [dense|moe|qwen0.5b] [out.gguf]');
    process.exit(2);
  }
  const out = process.argv[4] ?? benchModelPath(type, shape);
  if (existsSync(out)) console.log(`${out} exists`);
  else {
    const t0 = Date.now();
    makeBenchModel(type, out, shape);
    console.log(`${out} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
}
