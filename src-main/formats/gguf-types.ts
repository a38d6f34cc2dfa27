// GGUF on-disk types shared by the reader and the writer (spec: ggml/docs/gguf.md).

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** Metadata value types, as stored in the file. */
export enum GgufValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** Tensor dtypes (ggml_type ids); the subset the engine reads and writes. */
export enum GgmlType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
}

/** Elements per block and bytes per block for each dtype. */
export const GGML_BLOCK: Record<GgmlType, { block: number; bytes: number; name: string }> = {
  [GgmlType.F32]: { block: 1, bytes: 4, name: 'f32' },
  [GgmlType.F16]: { block: 1, bytes: 2, name: 'f16' },
  [GgmlType.BF16]: { block: 1, bytes: 2, name: 'bf16' },
  [GgmlType.Q4_0]: { block: 32, bytes: 18, name: 'q4_0' },
  [GgmlType.Q4_1]: { block: 32, bytes: 20, name: 'q4_1' },
  [GgmlType.Q5_0]: { block: 32, bytes: 22, name: 'q5_0' },
  [GgmlType.Q5_1]: { block: 32, bytes: 24, name: 'q5_1' },
  [GgmlType.Q8_0]: { block: 32, bytes: 34, name: 'q8_0' },
  [GgmlType.Q4_K]: { block: 256, bytes: 144, name: 'q4_K' },
  [GgmlType.Q5_K]: { block: 256, bytes: 176, name: 'q5_K' },
  [GgmlType.Q6_K]: { block: 256, bytes: 210, name: 'q6_K' },
  [GgmlType.Q8_K]: { block: 256, bytes: 292, name: 'q8_K' },
};

/** A metadata value with its stored type kept, so a file round-trips exactly. */
export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.STRING | GgufValueType.ARRAY | GgufValueType.BOOL | GgufValueType.UINT64 | GgufValueType.INT64>; value: number }
  | { type: GgufValueType.UINT64 | GgufValueType.INT64; value: bigint }
  | { type: GgufValueType.BOOL; value: boolean }
  | { type: GgufValueType.STRING; value: string }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: Array<number | bigint | boolean | string | GgufValue> };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: shape[0] is the innermost (contiguous) dimension, as stored. */
  shape: number[];
  type: GgmlType;
  /** Byte offset from the start of the tensor data section. */
  offset: bigint;
}

/** Bytes a tensor of this type and shape occupies. Throws on a row that is not a whole number of blocks. */
export function ggmlTensorBytes(type: GgmlType, shape: number[]): number {
  const info = GGML_BLOCK[type];
  if (!info) throw new Error(`unknown ggml type ${type}`);
  const n0 = shape[0] ?? 1;
  if (n0 % info.block !== 0) throw new Error(`row of ${n0} elements is not a multiple of the ${info.name} block (${info.block})`);
  let rows = 1;
  for (let i = 1; i < shape.length; i++) rows *= shape[i];
  return (n0 / info.block) * info.bytes * rows;
}
