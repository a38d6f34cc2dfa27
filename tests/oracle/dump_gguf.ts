// Prints our GGUF reader's view of a file as JSON (metadata as plain values, tensor infos), for
// tests/oracle/check_gguf_files.py to compare with llama.cpp's own gguf package.
import { readGguf } from '../../src-main/formats/gguf.ts';

const g = readGguf(process.argv[2]);
const meta: Record<string, unknown> = {};
for (const k of g.metadata.keys()) {
  const v = g.get(k);
  meta[k] = Array.isArray(v) && v.length > 64 ? { length: v.length, head: v.slice(0, 8) } : v;
}
process.stdout.write(
  JSON.stringify(
    { version: g.version, alignment: g.alignment, dataOffset: g.dataOffset, metadata: meta, tensors: g.tensors.map((t) => ({ name: t.name, shape: t.shape, type: t.type, offset: Number(t.offset) })) },
    (_k, v) => (typeof v === 'bigint' ? Number(v) : v),
  ) + '\n',
);
