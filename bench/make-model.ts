// The benchmark models, random GGUF files in f16, q8_0, q4_K_M (llama.cpp's mix: q4_K
// everywhere, q6_K for output.weight and for attn_v / ffn_down in the layers its use_more_bits
// rule picks, q5_0 where a row is not a whole number of 256-blocks) or q4_K (the same without
// use_more_bits: q4_K everywhere, q5_0 for rows that are not whole 256-blocks, q6_K for
// output.weight). Random values: speed does not depend on them. Files are streamed to disk, one
// tensor in memory at a time.
//  - dense: R1-Distill-Qwen-1.5B-shaped (hidden 1536, 28 layers, 12 heads / 2 KV heads, ffn 8960,
//    vocab 151936, untied, qkv bias), issue 2's benchmark;
//  - moe: a scaled-down DeepSeek-V3 (deepseek2 in llama.cpp's layout with attn_kv_b): hidden 1024,
//    16 layers (the first dense, ffn 2816), 16 heads, q_lora_rank 384, kv_lora_rank 256, qk_nope 64,
//    qk_rope 32, v 64, 64 routed experts (ffn 256) top-6 with sigmoid routing, 2 shared experts,
//    vocab 32256: about 0.9 B parameters, 0.18 B active. Issue 4's benchmark.
//  - v2lite: DeepSeek-V2-Lite-shaped (deepseek2, attn_kv_b layout, no q_lora: attn_q directly):
//    hidden 2048, 27 layers (the first dense, ffn 10944), 16 heads, kv_lora_rank 512, qk_nope 128,
//    qk_rope 64, v 128, 64 routed experts (ffn 1408) top-6 with softmax routing, 2 shared experts,
//    YaRN (factor 40 from 4096), vocab 102400: 15.7 B parameters, 2.4 B active besides the
//    embedding; q4_K only (9.5 GB). Its quantized tensors are row-aligned windows of a pool of
//    rows quantized once per type and row width (quantizing 15.7 B values would take an hour on
//    two cores), so rows repeat across and within tensors. Issue 4's benchmark.
//  - qwen0.5b: Qwen2-0.5B-shaped (hidden 896, 24 layers, 14 heads / 2 KV heads, ffn 4864, vocab
//    151936, tied), issue 5's training benchmark.
//
//   node --import tsx bench/make-model.ts f16|q8_0|q4_K_M|q4_K [dense|moe|qwen0.5b|v2lite] [out.gguf]
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf, writeGgufStream, type GgufTensorSource } from '../src-main/formats/gguf.ts';
import { GgmlType, type GgufValue } from '../src-main/formats/gguf-types.ts';
import { quantizeRows } from '../src-main/engine/native.ts';

export const SHAPE = { hidden: 1536, layers: 28, heads: 12, kvHeads: 2, ffn: 8960, vocab: 151936, tied: false };
/** Qwen2-0.5B (tied embeddings): issue 5's training benchmark. */
export const SHAPE_05B = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, ffn: 4864, vocab: 151936, tied: true };
/** A deepseek2 model in the HF config's terms; qLoraRank 0 means no query compression (attn_q). */
export interface MoeShape {
  name: string;
  hidden: number; layers: number; denseLayers: number; ffn: number; heads: number;
  qLoraRank: number; kvLoraRank: number; qkNope: number; qkRope: number; vHead: number;
  experts: number; expertFfn: number; topK: number; shared: number; vocab: number;
  /** V3's sigmoid gate (with e_score_correction_bias as exp_probs_b) or V2's softmax. */
  scoring: 'sigmoid' | 'softmax';
  routedScalingFactor: number; normTopkProb: boolean; nGroup: number; topkGroup: number;
  yarn?: { factor: number; originalContext: number; mscaleAllDim: number };
}
export const MOE_SHAPE: MoeShape = {
  name: 'DeepSeek-MoE-0.9B', hidden: 1024, layers: 16, denseLayers: 1, ffn: 2816, heads: 16, qLoraRank: 384, kvLoraRank: 256, qkNope: 64, qkRope: 32,
  vHead: 64, experts: 64, expertFfn: 256, topK: 6, shared: 2, vocab: 32256, scoring: 'sigmoid', routedScalingFactor: 2.5, normTopkProb: true,
  nGroup: 1, topkGroup: 1,
};
/** DeepSeek-V2-Lite's config.json. */
export const V2LITE_SHAPE: MoeShape = {
  name: 'DeepSeek-V2-Lite', hidden: 2048, layers: 27, denseLayers: 1, ffn: 10944, heads: 16, qLoraRank: 0, kvLoraRank: 512, qkNope: 128, qkRope: 64,
  vHead: 128, experts: 64, expertFfn: 1408, topK: 6, shared: 2, vocab: 102400, scoring: 'softmax', routedScalingFactor: 1, normTopkProb: false,
  nGroup: 1, topkGroup: 1, yarn: { factor: 40, originalContext: 4096, mscaleAllDim: 0.707 },
};
export type BenchType = 'f16' | 'q8_0' | 'q4_K_M' | 'q4_K';
export type BenchShape = 'dense' | 'moe' | 'qwen0.5b' | 'v2lite';
export function benchModelPath(type: BenchType, shape: BenchShape = 'dense'): string {
  const name = {
    dense: 'r1-distill-qwen-1.5b-shape', moe: 'deepseek-moe-0.9b-shape', 'qwen0.5b': 'qwen2-0.5b-shape', v2lite: 'deepseek-v2-lite-shape',
  }[shape];
  return join(dirname(fileURLToPath(import.meta.url)), 'models', `${name}-${type}.gguf`);
}

const GGML: Record<string, GgmlType> = {
  f32: GgmlType.F32, f16: GgmlType.F16, q8_0: GgmlType.Q8_0, q5_0: GgmlType.Q5_0, q4_K: GgmlType.Q4_K, q6_K: GgmlType.Q6_K,
};
// q4_K is labelled Q4_K_S, llama.cpp's nearly-all-q4_K mix (Q4_K_M would claim q6_K in half the
// layers' attn_v / ffn_down).
const FILE_TYPE: Record<string, number> = { f16: 1, q8_0: 7, q4_K_M: 15, q4_K: 14 };

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

/** Rows of the random pool quantized once to one type and row width, and their windows. */
class QuantizedRowPool {
  private readonly bytes: Uint8Array;
  private readonly rowBytes: number;
  private readonly rows: number;
  constructor(type: string, width: number) {
    this.rows = Math.floor((1 << 22) / width);
    this.bytes = quantizeRows(type, POOL.subarray(0, this.rows * width), width);
    this.rowBytes = this.bytes.length / this.rows;
  }
  /** nRows rows from windows of at most half the pool starting at offsets that move with salt. */
  take(nRows: number, salt: number): Uint8Array {
    const out = new Uint8Array(nRows * this.rowBytes);
    const win = this.rows >> 1;
    for (let r = 0, k = salt; r < nRows; r += win, k++) {
      const start = ((k * 7919 * 4099) % (this.rows - win)) * this.rowBytes;
      out.set(this.bytes.subarray(start, start + Math.min(win, nRows - r) * this.rowBytes), r * this.rowBytes);
    }
    return out;
  }
}

/** Random tensors, added in order and made when the writer reaches them; norms (names ending
 *  _norm.weight) are 1 + noise. fill 'pool' takes quantized tensors from a QuantizedRowPool
 *  instead of quantizing fresh values. */
function tensorList(fill: 'quantize' | 'pool' = 'quantize') {
  const tensors: GgufTensorSource[] = [];
  const pools = new Map<string, QuantizedRowPool>();
  let salt = 0;
  const add = (name: string, shape: number[], t: string) => {
    const n = shape.reduce((a, b) => a * b, 1), s = salt++;
    // llama-quantize's fallback for rows that are not whole 256-blocks (q4_K → q5_0, q6_K → q8_0).
    if (shape[0] % 256 && (t === 'q4_K' || t === 'q6_K')) t = t === 'q4_K' ? 'q5_0' : 'q8_0';
    const type = t;
    const data = () => {
      if (fill === 'pool' && type !== 'f32') {
        const key = `${type}/${shape[0]}`;
        if (!pools.has(key)) pools.set(key, new QuantizedRowPool(type, shape[0]));
        return pools.get(key)!.take(n / shape[0], s);
      }
      const x = values(n, s);
      if (name.endsWith('_norm.weight')) x.forEach((v, i, a) => (a[i] = 1 + v));
      return type === 'f32' ? new Uint8Array(x.buffer) : quantizeRows(type, x, shape[0]);
    };
    tensors.push({ name, shape, type: GGML[type], data });
  };
  return { tensors, add };
}

export function makeBenchModel(type: BenchType, path: string, shape: BenchShape = 'dense') {
  if (shape === 'moe') return makeMoeBenchModel(type, path, MOE_SHAPE, 'quantize');
  if (shape === 'v2lite') {
    if (type !== 'q4_K') throw new Error(`the v2lite model is made in q4_K only, not ${type}`);
    return makeMoeBenchModel(type, path, V2LITE_SHAPE, 'pool');
  }
  const { hidden: H, layers: L, heads, kvHeads, ffn: F, vocab: V, tied } = shape === 'dense' ? SHAPE : SHAPE_05B;
  const hd = H / heads;
  const { tensors, add } = tensorList();
  const mat = (layer: number, name: string) => {
    if (type !== 'q4_K_M') return type;
    if (name === 'attn_v' || name === 'ffn_down') return useMoreBits(layer, L) ? 'q6_K' : 'q4_K';
    return 'q4_K';
  };
  add('token_embd.weight', [H, V], type.startsWith('q4_K') ? 'q4_K' : type);
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
  if (!tied) add('output.weight', [H, V], type.startsWith('q4_K') ? 'q6_K' : type);
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
  writeGgufStream(path, { metadata: meta, tensors });
}

function makeMoeBenchModel(type: BenchType, path: string, S: MoeShape, fill: 'quantize' | 'pool') {
  const H = S.hidden, L = S.layers, nh = S.heads, qk = S.qkNope + S.qkRope;
  const { tensors, add } = tensorList(fill);
  const mat = (layer: number, name: string) => {
    if (type !== 'q4_K_M') return type;
    if (name.startsWith('ffn_down')) return useMoreBits(layer, L) ? 'q6_K' : 'q4_K';
    return 'q4_K';
  };
  add('token_embd.weight', [H, S.vocab], type.startsWith('q4_K') ? 'q4_K' : type);
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    add(p + 'attn_norm.weight', [H], 'f32');
    if (S.qLoraRank) {
      add(p + 'attn_q_a.weight', [H, S.qLoraRank], mat(l, 'attn_q_a'));
      add(p + 'attn_q_a_norm.weight', [S.qLoraRank], 'f32');
      add(p + 'attn_q_b.weight', [S.qLoraRank, nh * qk], mat(l, 'attn_q_b'));
    } else {
      add(p + 'attn_q.weight', [H, nh * qk], mat(l, 'attn_q'));
    }
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
    if (S.scoring === 'sigmoid') add(p + 'exp_probs_b.bias', [S.experts], 'f32');
    add(p + 'ffn_gate_exps.weight', [H, S.expertFfn, S.experts], mat(l, 'ffn_gate_exps'));
    add(p + 'ffn_up_exps.weight', [H, S.expertFfn, S.experts], mat(l, 'ffn_up_exps'));
    add(p + 'ffn_down_exps.weight', [S.expertFfn, H, S.experts], mat(l, 'ffn_down_exps'));
    add(p + 'ffn_gate_shexp.weight', [H, S.shared * S.expertFfn], mat(l, 'ffn_gate_shexp'));
    add(p + 'ffn_up_shexp.weight', [H, S.shared * S.expertFfn], mat(l, 'ffn_up_shexp'));
    add(p + 'ffn_down_shexp.weight', [S.shared * S.expertFfn, H], mat(l, 'ffn_down_shexp'));
  }
  add('output_norm.weight', [H], 'f32');
  add('output.weight', [H, S.vocab], type.startsWith('q4_K') ? 'q6_K' : type);
  const a = 'deepseek2';
  // The keys llama.cpp's converter writes (no q_lora_rank when the config's is null).
  const meta: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(a)],
    ['general.name', gguf.str(`${S.name}-shaped random ${type}`)],
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
    ...(S.qLoraRank ? [[`${a}.attention.q_lora_rank`, gguf.u32(S.qLoraRank)] as [string, GgufValue]] : []),
    [`${a}.attention.kv_lora_rank`, gguf.u32(S.kvLoraRank)],
    [`${a}.attention.key_length`, gguf.u32(qk)],
    [`${a}.attention.value_length`, gguf.u32(S.vHead)],
    [`${a}.expert_feed_forward_length`, gguf.u32(S.expertFfn)],
    [`${a}.expert_count`, gguf.u32(S.experts)],
    [`${a}.expert_shared_count`, gguf.u32(S.shared)],
    [`${a}.expert_group_count`, gguf.u32(S.nGroup)],
    [`${a}.expert_group_used_count`, gguf.u32(S.topkGroup)],
    [`${a}.expert_weights_scale`, gguf.f32(S.routedScalingFactor)],
    [`${a}.expert_weights_norm`, gguf.bool(S.normTopkProb)],
    [`${a}.expert_gating_func`, gguf.u32(S.scoring === 'sigmoid' ? 2 : 1)],  // llama.cpp: 1 softmax, 2 sigmoid
    [`${a}.rope.dimension_count`, gguf.u32(S.qkRope)],
  ];
  if (S.yarn)
    meta.push(
      [`${a}.rope.scaling.type`, gguf.str('yarn')],
      [`${a}.rope.scaling.factor`, gguf.f32(S.yarn.factor)],
      [`${a}.rope.scaling.original_context_length`, gguf.u32(S.yarn.originalContext)],
      [`${a}.rope.scaling.yarn_log_multiplier`, gguf.f32(0.1 * S.yarn.mscaleAllDim)],
    );
  mkdirSync(dirname(path), { recursive: true });
  writeGgufStream(path, { metadata: meta, tensors });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const type = process.argv[2] as BenchType;
  const shape = (process.argv[3] ?? 'dense') as BenchShape;
  if (!FILE_TYPE[type] || !['dense', 'moe', 'qwen0.5b', 'v2lite'].includes(shape) || (shape === 'v2lite' && type !== 'q4_K')) {
    console.error('usage: make-model.ts f16|q8_0|q4_K_M|q4_K [dense|moe|qwen0.5b|v2lite (q4_K only)] [out.gguf]');
    process.exit(2);
  }
  const out = process.argv[4] ?? benchModelPath(type, shape);
  if (existsSync(out)) console.log(`${out} exists`);
  else {
    const t0 = Date.now();
    makeBenchModel(type, out, shape);
    console.log(`${out}: ${(statSync(out).size / 1e9).toFixed(2)} GB in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
}
