// GGUF reader and writer: every value type round-trips, tensors land aligned, and every kind
// of broken file gives an error that names the file and the problem.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gguf, readGguf, writeGguf, writeGgufStream, type GgufTensorData } from '../../src-main/formats/gguf.ts';
import { GgmlType, GgufValueType, type GgufValue } from '../../src-main/formats/gguf-types.ts';

const dir = mkdtempSync(join(tmpdir(), 'aha-gguf-'));

const SAMPLE_TENSORS: GgufTensorData[] = [
  { name: 'a', shape: [4, 2], type: GgmlType.F32, data: new Uint8Array(new Float32Array([0, 1, 2, 3, 4, 5, 6, 7]).buffer) },
  { name: 'b', shape: [32], type: GgmlType.Q8_0, data: new Uint8Array(34).fill(7) },
  { name: 'c', shape: [3], type: GgmlType.F16, data: new Uint8Array(6).fill(1) },
];

function sample(path: string, alignment?: number) {
  writeGguf(path, { alignment, metadata: sampleMetadata(), tensors: SAMPLE_TENSORS });
}

function sampleMetadata(): Array<[string, GgufValue]> {
  return [
    ['general.architecture', gguf.str('llama')],
    ['u8', gguf.u8(200)],
    ['u32', gguf.u32(4000000000)],
    ['i32', gguf.i32(-5)],
    ['u64', gguf.u64(2n ** 60n)],
    ['f32', gguf.f32(0.5)],
    ['f64', gguf.f64(Math.PI)],
    ['bool', gguf.bool(true)],
    ['text', gguf.str('héllo 🌍')],
    ['strings', gguf.arr(GgufValueType.STRING, ['a', '', 'ccc'])],
    ['ints', gguf.arr(GgufValueType.INT32, [1, -2, 3])],
    ['nested', gguf.arr(GgufValueType.ARRAY, [gguf.arr(GgufValueType.UINT8, [1, 2]), gguf.arr(GgufValueType.UINT8, [3])])],
  ];
}

test('every value type and tensor round-trips', () => {
  for (const alignment of [undefined, 64]) {
    const p = join(dir, `ok-${alignment}.gguf`);
    sample(p, alignment);
    const g = readGguf(p);
    assert.equal(g.version, 3);
    assert.equal(g.get('u8'), 200);
    assert.equal(g.get('u32'), 4000000000);
    assert.equal(g.get('i32'), -5);
    assert.equal(g.get('u64'), 2n ** 60n);
    assert.equal(g.get('f32'), 0.5);
    assert.equal(g.get('f64'), Math.PI);
    assert.equal(g.get('bool'), true);
    assert.equal(g.get('text'), 'héllo 🌍');
    assert.deepEqual(g.get('strings'), ['a', '', 'ccc']);
    assert.deepEqual(g.get('ints'), [1, -2, 3]);
    assert.deepEqual(g.get('nested'), [[1, 2], [3]]);
    assert.equal(g.alignment, alignment ?? 32);
    assert.deepEqual(g.tensors.map((t) => [t.name, t.shape, t.type]), [['a', [4, 2], GgmlType.F32], ['b', [32], GgmlType.Q8_0], ['c', [3], GgmlType.F16]]);
    const bytes = readFileSync(p);
    for (const t of g.tensors) assert.equal((g.dataOffset + Number(t.offset)) % g.alignment, 0);
    const a = g.tensors[0];
    assert.equal(bytes.readFloatLE(g.dataOffset + Number(a.offset) + 4 * 5), 5);
    assert.equal(bytes[g.dataOffset + Number(g.tensors[1].offset) + 33], 7);
  }
});

test('a streamed file is byte for byte the in-memory one, each tensor made only at its turn', () => {
  for (const alignment of [undefined, 64]) {
    const held = join(dir, `held-${alignment}.gguf`), streamed = join(dir, `streamed-${alignment}.gguf`);
    sample(held, alignment);
    const madeAt: number[] = [];  // the file's length when each tensor was asked for
    const tensors = SAMPLE_TENSORS.map(({ name, shape, type, data }) => ({
      name, shape, type,
      data: () => {
        madeAt.push(statSync(streamed + '.tmp').size);
        return data.slice();
      },
    }));
    writeGgufStream(streamed, { alignment, metadata: sampleMetadata(), tensors });
    assert.deepEqual(readFileSync(streamed), readFileSync(held));
    const g = readGguf(streamed);
    assert.deepEqual(g.tensors, readGguf(held).tensors);
    // Each tensor was made when everything before it, and nothing after, was on disk.
    assert.deepEqual(madeAt, g.tensors.map((t) => g.dataOffset + Number(t.offset)));
  }
});

test('a streamed tensor of the wrong length fails and leaves no file behind', () => {
  const p = join(dir, 'short.gguf');
  const tensors = SAMPLE_TENSORS.map((t) => ({ ...t, data: () => (t.name === 'b' ? t.data.subarray(1) : t.data) }));
  assert.throws(() => writeGgufStream(p, { metadata: sampleMetadata(), tensors }), /short\.gguf: tensor 'b' has 33 bytes, its shape and type need 34/);
  assert.ok(!existsSync(p) && !existsSync(p + '.tmp'));
});

test('broken files give clear errors', () => {
  const p = join(dir, 'base.gguf');
  sample(p);
  const good = readFileSync(p);
  const bad = (name: string, buf: Buffer) => {
    const q = join(dir, name);
    writeFileSync(q, buf);
    return q;
  };
  assert.throws(() => readGguf(bad('magic.gguf', Buffer.concat([Buffer.from('GGML'), good.subarray(4)]))), /magic\.gguf: not a GGUF file \(wrong magic\)/);
  const v1 = Buffer.from(good);
  v1.writeUInt32LE(1, 4);
  assert.throws(() => readGguf(bad('v1.gguf', v1)), /version 1 is too old/);
  for (const n of [3, 10, 30, 100, good.length - 40]) {
    assert.throws(() => readGguf(bad(`trunc${n}.gguf`, good.subarray(0, n))), /trunc\d+\.gguf: (truncated|not a GGUF|tensor '.*': data lies outside)/);
  }
  const big = join(dir, 'cut.gguf');
  sample(big);
  truncateSync(big, statSync(big).size - 30); // into c's 6 bytes, past its padding
  assert.throws(() => readGguf(big), /tensor 'c': data lies outside the file/);
  assert.throws(() => readGguf(join(dir, 'missing.gguf')), /missing\.gguf: cannot open: ENOENT/);
  // Unknown tensor dtype: the type field follows tensor 'c''s name, dims count and one dim.
  const cName = good.lastIndexOf(Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 0x63]));
  const typed = Buffer.from(good);
  typed.writeUInt32LE(77, cName + 9 + 4 + 8);
  assert.throws(() => readGguf(bad('dtype.gguf', typed)), /tensor 'c': unknown or unsupported dtype id 77/);
});
