// What a model's files say about it, read from headers only: a GGUF file's metadata and tensor
// table, or a Hugging Face folder's config.json and the JSON headers of its safetensors shards.
//
// `architecture` is llama.cpp's name for the family ("llama", "qwen2", "qwen3", "deepseek2"):
// GGUF's general.architecture as written, and for an HF folder its `architectures[0]` mapped to
// that name (else its model_type). It is the name the engine reports for a loaded model.
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { basename, join } from 'node:path';
import { defaultSettings } from '../../contract/api.ts';
import type { ModelFacts } from '../../db/models.ts';
import { readGguf, type GgufFile, type PlainValue } from '../../formats/gguf.ts';
import { GGML_BLOCK, GGUF_MAGIC, ggmlTensorBytes } from '../../formats/gguf-types.ts';

/** Where a model's configuration does not say: the engine's default context. */
const DEFAULT_CONTEXT = 4096;
/** KV cache entries are f16. */
const KV_BYTES = 2;

/**
 * Reads a model's headers. The memory estimate is the weights plus an f16 KV cache for
 * min(the model's context length, `context`) tokens.
 */
export function inspectModel(path: string, context: number = defaultSettings.contextLength): ModelFacts {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new Error(code === 'ENOENT' ? `${path}: no such file or folder` : `${path}: cannot read (${code ?? (e as Error).message})`);
  }
  const shape = st.isDirectory() ? inspectHfFolder(path) : isGguf(path) ? inspectGguf(path) : undefined;
  if (!shape) throw new Error(`${path}: not a GGUF file or a Hugging Face model folder`);
  const { kvBytesPerToken, weightBytes, ...facts } = shape;
  const tokens = Math.min(facts.contextLength, context);
  return { ...facts, memoryEstimateBytes: weightBytes + kvBytesPerToken * tokens };
}

interface Shape extends Omit<ModelFacts, 'memoryEstimateBytes'> {
  weightBytes: number;
  kvBytesPerToken: number;
}

/**
 * KV cache bytes per token: every layer keeps a key and a value per KV head, or with MLA
 * (DeepSeek V2/V3) only the compressed latent and the rope key.
 */
function kvBytesPerToken(a: { layers: number; kvHeads: number[]; keyLength: number; valueLength: number; mlaWidth?: number }): number {
  if (a.mlaWidth) return a.layers * a.mlaWidth * KV_BYTES;
  let total = 0;
  for (let l = 0; l < a.layers; l++) total += (a.kvHeads[l] ?? a.kvHeads[0]) * (a.keyLength + a.valueLength) * KV_BYTES;
  return total;
}

// ---------------------------------------------------------------------------------------------
// GGUF

function isGguf(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const magic = Buffer.alloc(4);
    return readSync(fd, magic, 0, 4, 0) === 4 && magic.readUInt32LE(0) === GGUF_MAGIC;
  } finally {
    closeSync(fd);
  }
}

/** llama.cpp's llama_ftype names, by general.file_type. */
const FILE_TYPES: Record<number, string> = {
  0: 'F32', 1: 'F16', 2: 'Q4_0', 3: 'Q4_1', 7: 'Q8_0', 8: 'Q5_0', 9: 'Q5_1', 10: 'Q2_K', 11: 'Q3_K_S', 12: 'Q3_K_M',
  13: 'Q3_K_L', 14: 'Q4_K_S', 15: 'Q4_K_M', 16: 'Q5_K_S', 17: 'Q5_K_M', 18: 'Q6_K', 19: 'IQ2_XXS', 20: 'IQ2_XS',
  21: 'Q2_K_S', 22: 'IQ3_XS', 23: 'IQ3_XXS', 24: 'IQ1_S', 25: 'IQ4_NL', 26: 'IQ3_S', 27: 'IQ3_M', 28: 'IQ2_S',
  29: 'IQ2_M', 30: 'IQ4_XS', 31: 'IQ1_M', 32: 'BF16', 36: 'TQ1_0', 37: 'TQ2_0', 38: 'MXFP4_MOE', 39: 'NVFP4', 40: 'Q1_0',
};

/** Tensors that are precomputed buffers, not parameters. */
const GGUF_BUFFERS = new Set(['rope_freqs.weight']);

function inspectGguf(path: string): Shape {
  const g = readGguf(path);
  const arch = g.get('general.architecture');
  if (typeof arch !== 'string' || !arch) throw new Error(`${path}: GGUF file without general.architecture`);
  const num = (key: string): number | undefined => {
    const v = g.get(`${arch}.${key}`);
    return typeof v === 'number' || typeof v === 'bigint' ? Number(v) : undefined;
  };
  const perLayer = (key: string): number[] | undefined => {
    const v: PlainValue | undefined = g.get(`${arch}.${key}`);
    if (Array.isArray(v)) return v.map(Number);
    return typeof v === 'number' || typeof v === 'bigint' ? [Number(v)] : undefined;
  };
  const required = (key: string): number => {
    const v = num(key);
    if (v === undefined) throw new Error(`${path}: missing metadata '${arch}.${key}'`);
    return v;
  };

  const layers = required('block_count');
  const heads = perLayer('attention.head_count');
  if (!heads) throw new Error(`${path}: missing metadata '${arch}.attention.head_count'`);
  const keyLength = num('attention.key_length') ?? Math.floor(required('embedding_length') / heads[0]);
  const kvLoraRank = num('attention.kv_lora_rank');

  let parameters = 0;
  let weightBytes = 0;
  const bytesByType = new Map<number, number>();
  for (const t of g.tensors) {
    const bytes = ggmlTensorBytes(t.type, t.shape);
    weightBytes += bytes;
    bytesByType.set(t.type, (bytesByType.get(t.type) ?? 0) + bytes);
    if (!GGUF_BUFFERS.has(t.name)) parameters += t.shape.reduce((a, b) => a * b, 1);
  }
  return {
    path,
    name: stringOr(g.get('general.name'), basename(path).replace(/\.gguf$/i, '')),
    format: 'gguf',
    architecture: arch,
    sizeBytes: g.fileSize,
    quantization: ggufQuantization(g, bytesByType),
    parameters,
    contextLength: num('context_length') ?? DEFAULT_CONTEXT,
    weightBytes,
    kvBytesPerToken: kvBytesPerToken({
      layers,
      kvHeads: perLayer('attention.head_count_kv') ?? heads,
      keyLength,
      valueLength: num('attention.value_length') ?? keyLength,
      mlaWidth: kvLoraRank && kvLoraRank + (num('rope.dimension_count') ?? 0),
    }),
  };
}

/** general.file_type's name when the file has one, else the tensor type holding the most bytes. */
function ggufQuantization(g: GgufFile, bytesByType: Map<number, number>): string {
  const fileType = g.get('general.file_type');
  const named = typeof fileType === 'number' ? FILE_TYPES[fileType] : undefined;
  if (named) return named;
  const [dominant] = [...bytesByType].sort((a, b) => b[1] - a[1])[0] ?? [];
  return dominant === undefined ? 'unknown' : GGML_BLOCK[dominant as keyof typeof GGML_BLOCK].name.toUpperCase();
}

const stringOr = (v: unknown, fallback: string) => (typeof v === 'string' && v.trim() ? v.trim() : fallback);

// ---------------------------------------------------------------------------------------------
// Hugging Face folders

/** HF architectures → llama.cpp's names (convert_hf_to_gguf.py's model registrations). */
const HF_ARCHITECTURES: Record<string, string> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'llama',
  Qwen2ForCausalLM: 'qwen2',
  Qwen2MoeForCausalLM: 'qwen2moe',
  Qwen3ForCausalLM: 'qwen3',
  Qwen3MoeForCausalLM: 'qwen3moe',
  DeepseekV2ForCausalLM: 'deepseek2',
  DeepseekV3ForCausalLM: 'deepseek2',
  Gemma2ForCausalLM: 'gemma2',
  Gemma3ForCausalLM: 'gemma3',
  Phi3ForCausalLM: 'phi3',
};

/** Tensors that are not parameters: rotary buffers some checkpoints carry, fp8 block scales. */
const isSafetensorsBuffer = (name: string) => name.endsWith('rotary_emb.inv_freq') || name.endsWith('_scale_inv');

const ST_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL']);

/** Safetensors headers are JSON of a few MB at most; anything larger is not one. */
const MAX_ST_HEADER = 256 << 20;

interface StTensor {
  dtype: string;
  shape: number[];
  bytes: number;
}

/** One shard's tensor table, read from its JSON header alone. */
function readSafetensorsHeader(file: string): { tensors: Map<string, StTensor>; size: number } {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const fail = (what: string): never => {
      throw new Error(`${file}: not a safetensors file (${what})`);
    };
    const lenBuf = Buffer.alloc(8);
    if (readSync(fd, lenBuf, 0, 8, 0) !== 8) fail('shorter than its header length');
    const n = lenBuf.readBigUInt64LE(0);
    if (n < 2n || n > BigInt(Math.min(MAX_ST_HEADER, size - 8))) fail(`header length ${n} in a file of ${size} bytes`);
    const json = Buffer.alloc(Number(n));
    let got = 0;
    while (got < json.length) {
      const r = readSync(fd, json, got, json.length - got, 8 + got);
      if (r === 0) fail('truncated header');
      got += r;
    }
    let header: unknown;
    try {
      header = JSON.parse(json.toString('utf8'));
    } catch {
      fail('header is not JSON');
    }
    if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
    const dataSize = size - 8 - Number(n);
    const tensors = new Map<string, StTensor>();
    for (const [name, v] of Object.entries(header as Record<string, unknown>)) {
      if (name === '__metadata__') continue;
      const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      const offsets = t.data_offsets;
      if (
        typeof t.dtype !== 'string' || !ST_DTYPES.has(t.dtype) ||
        !Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0) ||
        !Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(Number.isInteger) ||
        offsets[0] < 0 || offsets[1] < offsets[0] || offsets[1] > dataSize
      )
        fail(`bad entry for tensor '${name}'`);
      tensors.set(name, { dtype: t.dtype as string, shape: t.shape as number[], bytes: (offsets as number[])[1] - (offsets as number[])[0] });
    }
    return { tensors, size };
  } finally {
    closeSync(fd);
  }
}

function readJson(file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${file}: not a JSON object`);
  return value as Record<string, unknown>;
}

/** The shards: those the index names when there is one, else every *.safetensors file. */
function safetensorsShards(dir: string, entries: string[]): string[] {
  const indexFile = join(dir, 'model.safetensors.index.json');
  if (entries.includes('model.safetensors.index.json')) {
    const map = readJson(indexFile).weight_map;
    if (typeof map !== 'object' || map === null) throw new Error(`${indexFile}: no weight_map`);
    const shards = [...new Set(Object.values(map as Record<string, unknown>).map(String))].sort();
    const absent = shards.filter((s) => !entries.includes(s));
    if (absent.length) throw new Error(`${dir}: shard${absent.length > 1 ? 's' : ''} ${absent.join(', ')} named in model.safetensors.index.json ${absent.length > 1 ? 'are' : 'is'} missing`);
    return shards;
  }
  return entries.filter((e) => e.endsWith('.safetensors')).sort();
}

function inspectHfFolder(dir: string): Shape | undefined {
  const entries = readdirSync(dir);
  if (!entries.includes('config.json')) return undefined;
  const shards = safetensorsShards(dir, entries);
  if (!shards.length) return undefined;
  const configFile = join(dir, 'config.json');
  const config = readJson(configFile);
  const int = (key: string): number | undefined => (Number.isInteger(config[key]) ? (config[key] as number) : undefined);
  const required = (key: string): number => {
    const v = int(key);
    if (v === undefined) throw new Error(`${configFile}: no ${key}`);
    return v;
  };

  const archs = config.architectures;
  const hfArch = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  const architecture = (hfArch && HF_ARCHITECTURES[hfArch]) ?? stringOr(config.model_type, hfArch ?? '');
  if (!architecture) throw new Error(`${configFile}: neither architectures nor model_type says what model this is`);

  let parameters = 0;
  let weightBytes = 0;
  let sizeBytes = 0;
  const bytesByDtype = new Map<string, number>();
  for (const shard of shards) {
    const { tensors, size } = readSafetensorsHeader(join(dir, shard));
    sizeBytes += size;
    for (const [name, t] of tensors) {
      weightBytes += t.bytes;
      bytesByDtype.set(t.dtype, (bytesByDtype.get(t.dtype) ?? 0) + t.bytes);
      if (!isSafetensorsBuffer(name)) parameters += t.shape.reduce((a, b) => a * b, 1);
    }
  }
  const [quantization] = [...bytesByDtype].sort((a, b) => b[1] - a[1])[0] ?? ['unknown'];

  const heads = required('num_attention_heads');
  const headDim = int('head_dim') ?? Math.floor(required('hidden_size') / heads);
  const kvLoraRank = int('kv_lora_rank');
  return {
    path: dir,
    name: basename(dir),
    format: 'safetensors',
    architecture,
    sizeBytes,
    quantization,
    parameters,
    contextLength: int('max_position_embeddings') ?? DEFAULT_CONTEXT,
    weightBytes,
    kvBytesPerToken: kvBytesPerToken({
      layers: required('num_hidden_layers'),
      kvHeads: [int('num_key_value_heads') ?? heads],
      keyLength: headDim,
      valueLength: headDim,
      mlaWidth: kvLoraRank && kvLoraRank + (int('qk_rope_head_dim') ?? 0),
    }),
  };
}
