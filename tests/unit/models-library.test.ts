// The model library: headers of the tiny models read into entries (parameters checked against a
// count from config.json), LM Studio and Ollama trees discovered in a temporary home, files that
// disappear and come back, and the errors for files that are no models.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { z } from 'zod';
import { ApiError, ModelEntry, defaultSettings } from '../../src-main/contract/api.ts';
import { openDatabase } from '../../src-main/db/index.ts';
import { setSettings } from '../../src-main/db/settings.ts';
import { gguf, readGguf, writeGguf } from '../../src-main/formats/gguf.ts';
import { GgmlType } from '../../src-main/formats/gguf-types.ts';
import { discoverModels, discoveryFolders } from '../../src-main/services/models/discover.ts';
import { inspectModel } from '../../src-main/services/models/inspect.ts';
import { ModelLibrary } from '../../src-main/services/models/library.ts';
import { DEFAULT_OUT, makeTinyModels } from '../fixtures/make-tiny-models.ts';

const TINY = ['qwen2-tiny', 'qwen3-tiny', 'llama-tiny-f32.gguf', 'qwen2-tiny256-q4_K.gguf'];
const tiny = (name: string) => join(DEFAULT_OUT, name);

const dir = mkdtempSync(join(tmpdir(), 'aha-models-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface HfConfig {
  model_type: string;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim?: number;
  max_position_embeddings: number;
  tie_word_embeddings: boolean;
}
let configs: Record<string, HfConfig>;

before(async () => {
  await makeTinyModels(DEFAULT_OUT, { only: TINY });
  const manifest = JSON.parse(readFileSync(tiny('MANIFEST.json'), 'utf8')) as { models: Record<string, { config: HfConfig }> };
  configs = Object.fromEntries(Object.entries(manifest.models).map(([k, v]) => [k, v.config]));
});

/** The parameter count the architecture implies, from config.json alone. */
function parameterCount(c: HfConfig): number {
  const h = c.hidden_size;
  const hd = c.head_dim ?? h / c.num_attention_heads;
  const q = c.num_attention_heads * hd;
  const kv = c.num_key_value_heads * hd;
  const bias = c.model_type === 'qwen2' ? q + 2 * kv : 0; // Qwen2's q/k/v biases
  const qkNorm = c.model_type === 'qwen3' ? 2 * hd : 0;
  const layer = h * q + 2 * h * kv + q * h + 3 * h * c.intermediate_size + 2 * h + bias + qkNorm;
  return c.vocab_size * h * (c.tie_word_embeddings ? 1 : 2) + h + c.num_hidden_layers * layer;
}

/** f16 K and V for every layer and KV head, per token. */
const kvPerToken = (c: HfConfig) => c.num_hidden_layers * c.num_key_value_heads * (c.head_dim ?? c.hidden_size / c.num_attention_heads) * 2 * 2;

// ---------------------------------------------------------------------------------------------
// Reading headers

test('a q8_0 GGUF: architecture, quantization, parameters, context, size and memory', () => {
  const path = tiny('qwen2-tiny-q8_0.gguf');
  const c = configs['qwen2-tiny'];
  const m = inspectModel(path);
  const size = statSync(path).size;
  const { memoryEstimateBytes, ...rest } = m;
  assert.deepEqual(rest, {
    path,
    name: 'qwen2-tiny',
    format: 'gguf',
    architecture: 'qwen2',
    sizeBytes: size,
    quantization: 'Q8_0',
    parameters: parameterCount(c),
    contextLength: 32768,
  });
  // The weights are the tensor data section, less at most one alignment pad per tensor.
  const g = readGguf(path);
  const weights = memoryEstimateBytes - kvPerToken(c) * defaultSettings.contextLength;
  assert.ok(weights <= size - g.dataOffset && weights > size - g.dataOffset - g.alignment * g.tensors.length, `weights ${weights}`);
  assert.equal(inspectModel(path, 1024).memoryEstimateBytes, weights + kvPerToken(c) * 1024);
  assert.equal(inspectModel(path, 1 << 20).memoryEstimateBytes, weights + kvPerToken(c) * 32768, 'the KV cache stops at the model context');
});

test('only the header of a big file is read', () => {
  const big = join(dir, 'big.gguf');
  copyFileSync(tiny('qwen2-tiny-q8_0.gguf'), big);
  truncateSync(big, 64 * 2 ** 30); // sparse: 64 GiB that reading in full would never finish
  const m = inspectModel(big);
  assert.deepEqual([m.sizeBytes, m.parameters], [64 * 2 ** 30, parameterCount(configs['qwen2-tiny'])]);
  rmSync(big);
});

test('GGUF files of every family count their real parameters', () => {
  const cases: Array<[string, string, string, string]> = [
    ['qwen2-tiny-f32.gguf', 'qwen2-tiny', 'qwen2', 'F32'],
    ['qwen2-tiny-f16.gguf', 'qwen2-tiny', 'qwen2', 'F16'],
    ['qwen3-tiny-f32.gguf', 'qwen3-tiny', 'qwen3', 'F32'],
    ['llama-tiny-f32.gguf', 'llama-tiny', 'llama', 'F32'], // rope_freqs.weight is no parameter
    ['qwen2-tiny256-q4_K.gguf', 'qwen2-tiny256', 'qwen2', 'Q4_K_M'],
  ];
  for (const [file, model, architecture, quantization] of cases) {
    const c = configs[model];
    const m = inspectModel(tiny(file), 2048);
    assert.deepEqual(
      [m.architecture, m.quantization, m.parameters, m.contextLength],
      [architecture, quantization, parameterCount(c), c.max_position_embeddings],
      file,
    );
    const smaller = inspectModel(tiny(file), 1024);
    assert.equal(m.memoryEstimateBytes - smaller.memoryEstimateBytes, kvPerToken(c) * 1024, `${file}: KV bytes per token (head_dim ${c.head_dim})`);
  }
});

test('a GGUF without general.file_type is named by its dominant tensor type; MLA caches only the latent', () => {
  const path = join(dir, 'mla.gguf');
  writeGguf(path, {
    metadata: [
      ['general.architecture', gguf.str('deepseek2')],
      ['deepseek2.block_count', gguf.u32(3)],
      ['deepseek2.embedding_length', gguf.u32(64)],
      ['deepseek2.attention.head_count', gguf.u32(4)],
      ['deepseek2.attention.head_count_kv', gguf.u32(4)],
      ['deepseek2.attention.kv_lora_rank', gguf.u32(512)],
      ['deepseek2.rope.dimension_count', gguf.u32(64)],
    ],
    tensors: [
      { name: 'blk.0.attn_kv_a_mqa.weight', shape: [64, 4], type: GgmlType.Q8_0, data: new Uint8Array(4 * 2 * 34) },
      { name: 'blk.0.attn_norm.weight', shape: [64], type: GgmlType.F32, data: new Uint8Array(64 * 4) },
    ],
  });
  const m = inspectModel(path);
  assert.equal(m.name, 'mla');
  assert.equal(m.architecture, 'deepseek2');
  assert.equal(m.quantization, 'Q8_0');
  assert.equal(m.parameters, 64 * 4 + 64);
  assert.equal(m.contextLength, 4096, 'no context_length: the engine default');
  assert.equal(m.memoryEstimateBytes, 272 + 256 + 3 * (512 + 64) * 2 * 4096);
});

test('Hugging Face folders: f32, bf16 and sharded read from their safetensors headers', () => {
  const c = configs['qwen2-tiny'];
  const one = inspectModel(tiny('qwen2-tiny'));
  const st = statSync(tiny('qwen2-tiny/model.safetensors')).size;
  assert.deepEqual(
    { ...one, memoryEstimateBytes: 0 },
    {
      path: tiny('qwen2-tiny'),
      name: 'qwen2-tiny',
      format: 'safetensors',
      architecture: 'qwen2',
      sizeBytes: st,
      quantization: 'F32',
      parameters: parameterCount(c),
      contextLength: 32768,
      memoryEstimateBytes: 0,
    },
  );
  assert.equal(one.memoryEstimateBytes, parameterCount(c) * 4 + kvPerToken(c) * 4096);

  const bf16 = inspectModel(tiny('qwen2-tiny-bf16'));
  assert.deepEqual([bf16.quantization, bf16.parameters], ['BF16', parameterCount(c)]);
  assert.equal(bf16.memoryEstimateBytes, parameterCount(c) * 2 + kvPerToken(c) * 4096);

  const sharded = inspectModel(tiny('qwen2-tiny-sharded'));
  const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'].map((f) => statSync(tiny(`qwen2-tiny-sharded/${f}`)).size);
  assert.deepEqual([sharded.sizeBytes, sharded.parameters, sharded.quantization], [shards[0] + shards[1], parameterCount(c), 'F32']);

  const qwen3 = inspectModel(tiny('qwen3-tiny'));
  assert.deepEqual([qwen3.architecture, qwen3.parameters, qwen3.contextLength], ['qwen3', parameterCount(configs['qwen3-tiny']), 40960]);
});

test('what is no model gets a clear error naming the path', () => {
  const text = join(dir, 'notes.txt');
  writeFileSync(text, 'hello');
  const empty = join(dir, 'empty-folder');
  mkdirSync(empty);
  for (const p of [text, empty]) assert.throws(() => inspectModel(p), new Error(`${p}: not a GGUF file or a Hugging Face model folder`));
  assert.throws(() => inspectModel(join(dir, 'nowhere.gguf')), new Error(`${join(dir, 'nowhere.gguf')}: no such file or folder`));

  const truncated = join(dir, 'truncated.gguf');
  copyFileSync(tiny('qwen2-tiny-q8_0.gguf'), truncated);
  truncateSync(truncated, 1 << 20);
  assert.throws(() => inspectModel(truncated), { message: new RegExp(`^${truncated}: .*truncated`) });

  const missingShard = join(dir, 'missing-shard');
  mkdirSync(missingShard);
  for (const f of ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors'])
    symlinkSync(tiny(`qwen2-tiny-sharded/${f}`), join(missingShard, f));
  assert.throws(() => inspectModel(missingShard), new Error(`${missingShard}: shard model-00002-of-00002.safetensors named in model.safetensors.index.json is missing`));

  const badHeader = join(dir, 'bad-header');
  mkdirSync(badHeader);
  copyFileSync(tiny('qwen2-tiny/config.json'), join(badHeader, 'config.json'));
  const junk = Buffer.alloc(64);
  junk.writeBigUInt64LE(1000n);
  writeFileSync(join(badHeader, 'model.safetensors'), junk);
  assert.throws(() => inspectModel(badHeader), new Error(`${join(badHeader, 'model.safetensors')}: not a safetensors file (header length 1000 in a file of 64 bytes)`));
});

// ---------------------------------------------------------------------------------------------
// Discovery and the library

function link(target: string, path: string) {
  mkdirSync(dirname(path), { recursive: true });
  symlinkSync(target, path);
}

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** An Ollama manifest as `ollama pull` writes it, its model layer pointing at a blob of `gguf`. */
function ollamaPull(root: string, ns: string, model: string, tag: string, gguf: string) {
  const digest = sha256(gguf);
  const blob = join(root, 'blobs', `sha256-${digest}`);
  if (!existsSync(blob)) link(gguf, blob); // tags of one model share their blob
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: `sha256:${'c'.repeat(64)}`, size: 485 },
    layers: [
      { mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${digest}`, size: statSync(gguf).size },
      { mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'d'.repeat(64)}`, size: 387 },
    ],
  };
  const file = join(root, 'manifests', 'registry.ollama.ai', ns, model, tag);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(manifest));
  return blob;
}

interface FakeHome {
  home: string;
  lmQwen2: string;
  lmLlama: string;
  ollamaQwen3: string;
  ollamaQwen2: string;
  badManifest: string;
  noModelLayer: string;
  badGguf: string;
}

function fakeHome(name: string): FakeHome {
  const home = join(dir, name);
  const lm = join(home, '.lmstudio', 'models');
  const lmQwen2 = join(lm, 'tiny-org', 'Qwen2-Tiny-GGUF', 'qwen2-tiny-q8_0.gguf');
  link(tiny('qwen2-tiny-q8_0.gguf'), lmQwen2);
  link(tiny('qwen2-tiny-f16.gguf'), join(lm, 'tiny-org', 'Qwen2-Tiny-GGUF', 'mmproj-qwen2-tiny-f16.gguf'));
  writeFileSync(join(lm, 'tiny-org', 'Qwen2-Tiny-GGUF', 'README.md'), '# Qwen2 tiny');
  link(tiny('qwen2-tiny-f32.gguf'), join(lm, 'tiny-org', 'stray-at-the-wrong-depth.gguf'));
  const badGguf = join(lm, 'tiny-org', 'Broken-GGUF', 'broken.gguf');
  mkdirSync(dirname(badGguf), { recursive: true });
  writeFileSync(badGguf, 'not a model at all');
  const lmLlama = join(home, '.cache', 'lm-studio', 'models', 'meta', 'Llama-Tiny', 'llama-tiny-f32.gguf');
  link(tiny('llama-tiny-f32.gguf'), lmLlama);

  const ollama = join(home, '.ollama', 'models');
  const ollamaQwen3 = ollamaPull(ollama, 'library', 'qwen3-tiny', 'latest', tiny('qwen3-tiny-f32.gguf'));
  ollamaPull(ollama, 'library', 'qwen3-tiny', '0.6b', tiny('qwen3-tiny-f32.gguf'));
  const ollamaQwen2 = ollamaPull(ollama, 'someone', 'qwen2-tiny', 'f16', tiny('qwen2-tiny-f16.gguf'));
  const badManifest = join(ollama, 'manifests', 'registry.ollama.ai', 'library', 'broken', 'latest');
  mkdirSync(dirname(badManifest), { recursive: true });
  writeFileSync(badManifest, '{"schemaVersion": 2, "layers": [');
  const noModelLayer = join(ollama, 'manifests', 'registry.ollama.ai', 'library', 'template-only', 'latest');
  mkdirSync(dirname(noModelLayer), { recursive: true });
  writeFileSync(noModelLayer, JSON.stringify({ schemaVersion: 2, layers: [{ mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'e'.repeat(64)}` }] }));
  return { home, lmQwen2, lmLlama, ollamaQwen3, ollamaQwen2, badManifest, noModelLayer, badGguf };
}

test('discovery folders: LM Studio and Ollama under the home, plus $OLLAMA_MODELS', () => {
  const home = join(dir, 'folders-home');
  mkdirSync(join(home, '.ollama', 'models'), { recursive: true });
  assert.deepEqual(discoveryFolders(home, {}), [
    { source: 'lmstudio', path: join(home, '.lmstudio', 'models'), exists: false },
    { source: 'lmstudio', path: join(home, '.cache', 'lm-studio', 'models'), exists: false },
    { source: 'ollama', path: join(home, '.ollama', 'models'), exists: true },
  ]);
  assert.deepEqual(discoveryFolders(home, { OLLAMA_MODELS: '/srv/ollama' }).at(-1), { source: 'ollama', path: '/srv/ollama', exists: false });
  assert.equal(discoveryFolders(home, { OLLAMA_MODELS: join(home, '.ollama', 'models') }).length, 3, 'the same folder once');
  assert.deepEqual(discoverModels(discoveryFolders(join(dir, 'no-such-home'), {})), { models: [], warnings: [] });
});

test('discovery finds LM Studio GGUFs and Ollama model blobs, and skips what is no model entry', () => {
  const h = fakeHome('discover-home');
  const { models, warnings } = discoverModels(discoveryFolders(h.home, {}));
  assert.deepEqual(models, [
    { source: 'lmstudio', path: h.badGguf },
    { source: 'lmstudio', path: h.lmQwen2 },
    { source: 'lmstudio', path: h.lmLlama },
    { source: 'ollama', path: h.ollamaQwen3, name: 'qwen3-tiny:0.6b' },
    { source: 'ollama', path: h.ollamaQwen2, name: 'someone/qwen2-tiny:f16' },
  ]);
  assert.deepEqual(warnings, [`${h.badManifest}: skipped (not JSON)`, `${h.noModelLayer}: skipped (no model layer)`]);
});

test('the library: refresh adds what is discovered, add is idempotent, remove and get', () => {
  const h = fakeHome('library-home');
  const db = openDatabase(':memory:');
  const warnings: string[] = [];
  const library = new ModelLibrary(db, { home: h.home, env: {}, warn: (w) => warnings.push(w) });
  const models = library.refresh();
  z.array(ModelEntry).parse(models);
  const byPath = new Map(models.map((m) => [m.path, m]));
  assert.equal(models.length, 4);
  assert.deepEqual(
    [h.lmQwen2, h.lmLlama, h.ollamaQwen3, h.ollamaQwen2].map((p) => {
      const m = byPath.get(p)!;
      return [m.source, m.name, m.architecture, m.quantization, m.missing];
    }),
    [
      ['lmstudio', 'qwen2-tiny', 'qwen2', 'Q8_0', false],
      ['lmstudio', 'llama-tiny', 'llama', 'F32', false],
      ['ollama', 'qwen3-tiny:0.6b', 'qwen3', 'F32', false],
      ['ollama', 'someone/qwen2-tiny:f16', 'qwen2', 'F16', false],
    ],
  );
  assert.equal(byPath.get(h.lmQwen2)!.parameters, parameterCount(configs['qwen2-tiny']));
  assert.deepEqual(warnings, [
    `${h.badManifest}: skipped (not JSON)`,
    `${h.noModelLayer}: skipped (no model layer)`,
    `${h.badGguf}: not a GGUF file or a Hugging Face model folder`,
  ]);

  const added = library.add(relative(process.cwd(), tiny('qwen2-tiny-sharded')));
  assert.deepEqual([added.path, added.source, added.format, added.missing], [tiny('qwen2-tiny-sharded'), 'added', 'safetensors', false]);
  assert.deepEqual(library.add(tiny('qwen2-tiny-sharded')), added, 'the same path twice gives the same entry');
  assert.deepEqual(library.add(h.lmQwen2), byPath.get(h.lmQwen2), 'a discovered path keeps its entry');
  assert.equal(library.list().length, 5);
  assert.deepEqual(library.get(added.id), added);

  library.remove(added.id);
  assert.equal(library.list().length, 4);
  assert.throws(() => library.get(added.id), (e) => e instanceof ApiError && e.code === 'not_found');
  assert.throws(() => library.remove(added.id), (e) => e instanceof ApiError && e.code === 'not_found');
  assert.throws(
    () => library.add(h.badGguf),
    (e) => e instanceof ApiError && e.code === 'invalid_request' && e.message === `${h.badGguf}: not a GGUF file or a Hugging Face model folder`,
  );
  db.close();
});

test('the library marks a file that disappeared as missing, and unmarks it when it is back', () => {
  const h = fakeHome('missing-home');
  const db = openDatabase(':memory:');
  const library = new ModelLibrary(db, { home: h.home, env: {}, warn: () => {} });
  const added = library.add(tiny('qwen3-tiny'));
  const before = library.refresh();
  const llama = before.find((m) => m.path === h.lmLlama)!;

  rmSync(h.lmLlama);
  const hf = join(dir, 'qwen3-tiny-copy');
  mkdirSync(hf);
  for (const f of ['config.json', 'model.safetensors']) symlinkSync(tiny(`qwen3-tiny/${f}`), join(hf, f));
  const copy = library.add(hf);
  rmSync(hf, { recursive: true });
  const gone = library.refresh();
  assert.deepEqual(gone.filter((m) => m.missing).map((m) => m.path).sort(), [h.lmLlama, hf].sort());
  assert.equal(gone.length, before.length + 1, 'missing entries stay');
  assert.equal(library.get(added.id).missing, false);
  assert.throws(() => library.add(hf), (e) => e instanceof ApiError && e.message === `${hf}: no such file or folder`);

  link(tiny('llama-tiny-f32.gguf'), h.lmLlama);
  const back = library.refresh();
  assert.deepEqual(back.find((m) => m.id === llama.id), llama, 'the same entry, unmarked');
  assert.equal(library.get(copy.id).missing, true);
  mkdirSync(hf);
  for (const f of ['config.json', 'model.safetensors']) symlinkSync(tiny(`qwen3-tiny/${f}`), join(hf, f));
  assert.deepEqual(library.add(hf), copy, 'adding a missing path that is back unmarks it');
  db.close();
});

test('the memory estimate follows the context length setting', () => {
  const db = openDatabase(':memory:');
  setSettings(db, { contextLength: 1024 });
  const library = new ModelLibrary(db, { home: join(dir, 'no-such-home'), env: {} });
  const m = library.add(tiny('qwen2-tiny-q8_0.gguf'));
  assert.equal(m.memoryEstimateBytes, inspectModel(tiny('qwen2-tiny-q8_0.gguf'), 1024).memoryEstimateBytes);
  assert.equal(inspectModel(tiny('qwen2-tiny-q8_0.gguf')).memoryEstimateBytes - m.memoryEstimateBytes, kvPerToken(configs['qwen2-tiny']) * 3072);
  db.close();
});
