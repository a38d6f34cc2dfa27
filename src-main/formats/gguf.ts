// GGUF header reader and writer (v3; v2 read too). The reader never loads tensor data:
// it reads the header in growing chunks and validates every length against the file size.
import { closeSync, fstatSync, openSync, readSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { basename } from 'node:path';
import {
  GGML_BLOCK,
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_MAGIC,
  GgmlType,
  GgufValueType,
  ggmlTensorBytes,
  type GgufTensorInfo,
  type GgufValue,
} from './gguf-types.ts';

export type PlainValue = number | bigint | boolean | string | PlainValue[];

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
  /** The value as plain JS (arrays unwrapped), or undefined. */
  get(key: string): PlainValue | undefined;
}

const MAX_STRING = 1 << 30;
const MAX_COUNT = 1 << 24;

class Reader {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private readonly fd: number, readonly size: number, private readonly name: string) {}

  fail(msg: string): never {
    throw new Error(`${this.name}: ${msg}`);
  }

  private ensure(n: number, what: string) {
    if (this.pos + n > this.size) this.fail(`truncated: ${what} at byte ${this.pos} ends past the end of the file (${this.size} bytes)`);
    const end = this.bufStart + this.buf.length;
    if (this.pos >= this.bufStart && this.pos + n <= end) return;
    const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    const b = Buffer.alloc(len);
    let got = 0;
    while (got < len) got += readSync(this.fd, b, got, len - got, this.pos + got);
    this.buf = b;
    this.bufStart = this.pos;
  }

  // Ensures n bytes at pos are buffered and returns their offset in the buffer. Callers must
  // call this before touching this.buf: it may replace the buffer.
  private at(n: number, what: string): number {
    this.ensure(n, what);
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }

  u8(w: string) { const o = this.at(1, w); return this.buf.readUInt8(o); }
  i8(w: string) { const o = this.at(1, w); return this.buf.readInt8(o); }
  u16(w: string) { const o = this.at(2, w); return this.buf.readUInt16LE(o); }
  i16(w: string) { const o = this.at(2, w); return this.buf.readInt16LE(o); }
  u32(w: string) { const o = this.at(4, w); return this.buf.readUInt32LE(o); }
  i32(w: string) { const o = this.at(4, w); return this.buf.readInt32LE(o); }
  f32(w: string) { const o = this.at(4, w); return this.buf.readFloatLE(o); }
  f64(w: string) { const o = this.at(8, w); return this.buf.readDoubleLE(o); }
  u64(w: string) { const o = this.at(8, w); return this.buf.readBigUInt64LE(o); }
  i64(w: string) { const o = this.at(8, w); return this.buf.readBigInt64LE(o); }
  count(w: string, max = MAX_COUNT): number {
    const n = this.u64(w);
    if (n > BigInt(max)) this.fail(`${w}: absurd count ${n}`);
    return Number(n);
  }
  str(w: string): string {
    const n = this.count(w, MAX_STRING);
    const o = this.at(n, w);
    return this.buf.toString('utf8', o, o + n);
  }
}

function readValue(r: Reader, type: number, key: string, depth: number): GgufValue {
  switch (type) {
    case GgufValueType.UINT8: return { type, value: r.u8(key) };
    case GgufValueType.INT8: return { type, value: r.i8(key) };
    case GgufValueType.UINT16: return { type, value: r.u16(key) };
    case GgufValueType.INT16: return { type, value: r.i16(key) };
    case GgufValueType.UINT32: return { type, value: r.u32(key) };
    case GgufValueType.INT32: return { type, value: r.i32(key) };
    case GgufValueType.FLOAT32: return { type, value: r.f32(key) };
    case GgufValueType.FLOAT64: return { type, value: r.f64(key) };
    case GgufValueType.UINT64: return { type, value: r.u64(key) };
    case GgufValueType.INT64: return { type, value: r.i64(key) };
    case GgufValueType.BOOL: {
      const b = r.u8(key);
      if (b > 1) r.fail(`metadata '${key}': bool value ${b} is neither 0 nor 1`);
      return { type, value: b === 1 };
    }
    case GgufValueType.STRING: return { type, value: r.str(key) };
    case GgufValueType.ARRAY: {
      if (depth > 8) r.fail(`metadata '${key}': arrays nested too deep`);
      const itemType = r.u32(key);
      if (itemType > GgufValueType.FLOAT64) r.fail(`metadata '${key}': unknown array item type ${itemType}`);
      const n = r.count(key);
      if (n > r.size - r.pos) r.fail(`truncated: metadata array '${key}' of ${n} items ends past the end of the file`);
      const items: Array<number | bigint | boolean | string | GgufValue> = new Array(n);
      for (let i = 0; i < n; i++) {
        const v = readValue(r, itemType, key, depth + 1);
        items[i] = itemType === GgufValueType.ARRAY ? v : (v.value as number | bigint | boolean | string);
      }
      return { type: GgufValueType.ARRAY, itemType, value: items };
    }
    default:
      return r.fail(`metadata '${key}': unknown value type ${type}`);
  }
}

export function plain(v: GgufValue): PlainValue {
  if (v.type !== GgufValueType.ARRAY) return v.value as PlainValue;
  return v.value.map((x) => (typeof x === 'object' ? plain(x as GgufValue) : x));
}

export function readGguf(path: string): GgufFile {
  const name = path;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new Error(`${name}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const r = new Reader(fd, size, name);
    if (size < 4 || r.u32('magic') !== GGUF_MAGIC) r.fail('not a GGUF file (wrong magic)');
    const version = r.u32('version');
    if (version === 1) r.fail('GGUF version 1 is too old; convert it again with a current llama.cpp');
    if (version !== 2 && version !== 3) r.fail(`unsupported GGUF version ${version}`);
    const nTensors = r.count('tensor count');
    const nKv = r.count('metadata count');
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < nKv; i++) {
      const key = r.str('metadata key');
      const v = readValue(r, r.u32(`metadata '${key}' type`), key, 0);
      if (metadata.has(key)) r.fail(`duplicate metadata key '${key}'`);
      metadata.set(key, v);
    }
    const al = metadata.get('general.alignment');
    const alignment = al ? Number(al.value) : GGUF_DEFAULT_ALIGNMENT;
    if (!(alignment > 0 && (alignment & (alignment - 1)) === 0)) r.fail(`general.alignment must be a power of two, got ${alignment}`);
    const tensors: GgufTensorInfo[] = [];
    const seen = new Set<string>();
    for (let i = 0; i < nTensors; i++) {
      const tname = r.str('tensor name');
      const nd = r.u32('tensor dims');
      if (nd < 1 || nd > 4) r.fail(`tensor '${tname}': ${nd} dimensions (1 to 4 allowed)`);
      const shape: number[] = [];
      for (let d = 0; d < nd; d++) {
        const e = r.u64('tensor shape');
        if (e === 0n || e > 1n << 40n) r.fail(`tensor '${tname}': absurd dimension ${e}`);
        shape.push(Number(e));
      }
      const type = r.u32('tensor type') as GgmlType;
      if (!GGML_BLOCK[type]) r.fail(`tensor '${tname}': unknown or unsupported dtype id ${type}`);
      const offset = r.u64('tensor offset');
      if (offset % BigInt(alignment) !== 0n) r.fail(`tensor '${tname}': data offset ${offset} is not aligned to ${alignment}`);
      if (seen.has(tname)) r.fail(`duplicate tensor '${tname}'`);
      seen.add(tname);
      tensors.push({ name: tname, shape, type, offset });
    }
    const dataOffset = Math.ceil(r.pos / alignment) * alignment;
    for (const t of tensors) {
      let bytes = 0;
      try {
        bytes = ggmlTensorBytes(t.type, t.shape);
      } catch (e) {
        r.fail(`tensor '${t.name}': ${(e as Error).message}`);
      }
      if (dataOffset + Number(t.offset) + bytes > size)
        r.fail(`tensor '${t.name}': data lies outside the file (${size} bytes); the file is truncated or corrupt`);
    }
    return {
      path,
      version,
      metadata,
      tensors,
      alignment,
      dataOffset,
      fileSize: size,
      get(key: string) {
        const v = metadata.get(key);
        return v ? plain(v) : undefined;
      },
    };
  } finally {
    closeSync(fd);
  }
}

// ---- writing

export const gguf = {
  u8: (value: number): GgufValue => ({ type: GgufValueType.UINT8, value }),
  u32: (value: number): GgufValue => ({ type: GgufValueType.UINT32, value }),
  i32: (value: number): GgufValue => ({ type: GgufValueType.INT32, value }),
  u64: (value: bigint | number): GgufValue => ({ type: GgufValueType.UINT64, value: BigInt(value) }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.FLOAT32, value }),
  f64: (value: number): GgufValue => ({ type: GgufValueType.FLOAT64, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  arr: (itemType: GgufValueType, value: Array<number | bigint | boolean | string | GgufValue>): GgufValue => ({
    type: GgufValueType.ARRAY,
    itemType,
    value,
  }),
};

export interface GgufTensorData {
  name: string;
  /** ggml order: innermost (contiguous) dimension first. */
  shape: number[];
  type: GgmlType;
  data: Uint8Array;
}

const SCALAR_BYTES: Partial<Record<GgufValueType, number>> = {
  [GgufValueType.UINT8]: 1, [GgufValueType.INT8]: 1, [GgufValueType.BOOL]: 1,
  [GgufValueType.UINT16]: 2, [GgufValueType.INT16]: 2,
  [GgufValueType.UINT32]: 4, [GgufValueType.INT32]: 4, [GgufValueType.FLOAT32]: 4,
  [GgufValueType.UINT64]: 8, [GgufValueType.INT64]: 8, [GgufValueType.FLOAT64]: 8,
};

class Writer {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer) {
    this.chunks.push(b);
    this.length += b.length;
  }
  num(type: GgufValueType, v: number | bigint | boolean) {
    const b = Buffer.alloc(SCALAR_BYTES[type] ?? 0);
    switch (type) {
      case GgufValueType.UINT8: b.writeUInt8(Number(v)); break;
      case GgufValueType.INT8: b.writeInt8(Number(v)); break;
      case GgufValueType.UINT16: b.writeUInt16LE(Number(v)); break;
      case GgufValueType.INT16: b.writeInt16LE(Number(v)); break;
      case GgufValueType.UINT32: b.writeUInt32LE(Number(v)); break;
      case GgufValueType.INT32: b.writeInt32LE(Number(v)); break;
      case GgufValueType.FLOAT32: b.writeFloatLE(Number(v)); break;
      case GgufValueType.BOOL: b.writeUInt8(v ? 1 : 0); break;
      case GgufValueType.UINT64: b.writeBigUInt64LE(BigInt(v as number | bigint)); break;
      case GgufValueType.INT64: b.writeBigInt64LE(BigInt(v as number | bigint)); break;
      case GgufValueType.FLOAT64: b.writeDoubleLE(Number(v)); break;
      default: throw new Error(`not a numeric GGUF type: ${type}`);
    }
    this.push(b);
  }
  u32(v: number) { this.num(GgufValueType.UINT32, v); }
  u64(v: number | bigint) { this.num(GgufValueType.UINT64, BigInt(v)); }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  value(v: GgufValue) {
    this.u32(v.type);
    this.payload(v.type, v);
  }
  private payload(type: GgufValueType, v: GgufValue | number | bigint | boolean | string) {
    if (type === GgufValueType.STRING) return this.str(typeof v === 'object' ? (v.value as string) : (v as string));
    if (type === GgufValueType.ARRAY) {
      const a = v as Extract<GgufValue, { type: GgufValueType.ARRAY }>;
      this.u32(a.itemType);
      this.u64(a.value.length);
      for (const item of a.value) this.payload(a.itemType, item as GgufValue);
      return;
    }
    this.num(type, (typeof v === 'object' ? v.value : v) as number | bigint | boolean);
  }
  take(): Buffer {
    const b = Buffer.concat(this.chunks);
    this.chunks = [];
    this.length = 0;
    return b;
  }
}

/** A tensor whose bytes are made only when the writer reaches it, so a file may be larger than memory. */
export interface GgufTensorSource {
  name: string;
  /** ggml order: innermost (contiguous) dimension first. */
  shape: number[];
  type: GgmlType;
  /** The tensor's ggmlTensorBytes(type, shape) bytes; called once, in file order. */
  data: () => Uint8Array;
}

type GgufMetadata = Array<[string, GgufValue]> | Map<string, GgufValue>;

/** Writes a GGUF v3 file atomically (to path + '.tmp', then renamed) from tensors held in memory. */
export function writeGguf(path: string, opts: { metadata: GgufMetadata; tensors: GgufTensorData[]; alignment?: number }): void {
  const tensors = opts.tensors.map(({ name, shape, type, data }) => ({ name, shape, type, data: () => data }));
  writeGgufStream(path, { ...opts, tensors });
}

/** Writes a GGUF v3 file atomically, asking each tensor for its bytes when its turn comes: at most
 *  one tensor's data is held at a time. */
export function writeGgufStream(path: string, opts: { metadata: GgufMetadata; tensors: GgufTensorSource[]; alignment?: number }): void {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const meta = [...(opts.metadata instanceof Map ? opts.metadata.entries() : opts.metadata)];
  if (alignment !== GGUF_DEFAULT_ALIGNMENT && !meta.some(([k]) => k === 'general.alignment')) meta.push(['general.alignment', gguf.u32(alignment)]);
  const w = new Writer();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(opts.tensors.length);
  w.u64(meta.length);
  for (const [k, v] of meta) {
    w.str(k);
    w.value(v);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of opts.tensors) {
    const bytes = ggmlTensorBytes(t.type, t.shape);
    sizes.push(bytes);
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of t.shape) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  const header = w.take();
  const tmp = path + '.tmp';
  const fd = openSync(tmp, 'w');
  try {
    let pos = 0;
    const put = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
      pos += b.length;
    };
    const pad = (to: number) => {
      const n = (to - (pos % to)) % to;
      if (n) put(new Uint8Array(n));
    };
    put(header);
    pad(alignment);
    opts.tensors.forEach((t, i) => {
      const data = t.data();
      if (data.length !== sizes[i]) throw new Error(`${basename(path)}: tensor '${t.name}' has ${data.length} bytes, its shape and type need ${sizes[i]}`);
      put(data);
      pad(alignment);
    });
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
