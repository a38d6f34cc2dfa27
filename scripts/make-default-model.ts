// Makes the embedded default model, resources/default-model (issue 6): the pipeline of the proof
// that GRPO learns (tests/integration/learns.test.ts, tests/fixtures/addition.ts), run longer.
//
//   1. a fresh tiny Qwen3 (TINY_ADDER) over the byte-level tokenizer with a ChatML template;
//   2. cold start: `aha train sft --full` on the sloppy teacher's two-digit additions worked in a
//      think block (it forgets most carries);
//   3. `aha train grpo` on a LoRA over it, rewarded by the math and format graders alone;
//   4. the adapter merged into the f32 weights (W += alpha/r · B·A): one plain HF folder that
//      `aha generate`, the app and transformers load, and that trains further like any model;
//   5. held-out greedy accuracy of the cold start, of the adapter and of the merged model, into
//      training.json beside the weights (and the README).
//
// Deterministic and seeded: the same run gives the same model on one machine (thread count and
// CPU kernels fixed). Takes a few minutes on two cores.
//
//   node --import tsx scripts/make-default-model.ts [--out resources/default-model] [--threads 2] [--work DIR]
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { greedyAccuracy, splitProblems, TINY_ADDER, writeColdStart, writeGrpoPrompts, type Accuracy } from '../tests/fixtures/addition.ts';
import { writeByteTokenizer } from '../tests/fixtures/byte-tokenizer.ts';
import { openModel } from '../src-main/engine/open.ts';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string' }, threads: { type: 'string' }, work: { type: 'string' } } });
const out = resolve(values.out ?? join(root, 'resources/default-model'));
const threads = values.threads ?? '2';
const work = values.work ? resolve(values.work) : mkdtempSync(join(tmpdir(), 'aha-default-model-'));
mkdirSync(work, { recursive: true });

const SEED = 11;
const COLD_START = { count: 24000, carryShare: 0.7, forgetRate: 0.6, seed: SEED };
const SFT = { lr: '3e-3', warmup: '20', batch: '8' };
const GRPO = { steps: '200', numGenerations: '8', promptsPerStep: '8', maxTokens: '80', temperature: '0.6', lr: '1e-3', rank: '8', alpha: '16' };
const HELD_OUT = 500;

/** `aha ARGS…` with this Node, its runs recorded in the work folder's database (never the user's); exits on failure. */
function aha(...args: string[]): string {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [join(root, 'bin/aha.mjs'), ...args, '--threads', threads, '--json'], {
    cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, env: { ...process.env, AHA_DATA_DIR: join(work, 'data') },
  });
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(1);
  }
  process.stderr.write(`aha ${args.slice(0, 2).join(' ')}: ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);
  return r.stdout;
}

// ------------------------------------------------------------------ f32 safetensors and the merge

interface F32Tensor {
  shape: number[];
  data: Float32Array;
}

function readF32(path: string): Map<string, F32Tensor> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors = new Map<string, F32Tensor>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (e.dtype !== 'F32') throw new Error(`${path}: ${name} is ${e.dtype}, not F32`);
    const bytes = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    tensors.set(name, { shape: e.shape, data: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length)) });
  }
  return tensors;
}

/** As the safetensors library writes: tensors sorted by name, the header padded with spaces to 8 bytes. */
function writeF32(path: string, tensors: Map<string, F32Tensor>): void {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const size = Buffer.alloc(8);
  size.writeBigUInt64LE(BigInt(json.length));
  writeFileSync(path, Buffer.concat([size, Buffer.from(json), ...names.map((n) => Buffer.from(tensors.get(n)!.data.buffer))]));
}

/** W[out, in] += scale · B[out, r] · A[r, in] for every LoRA pair of a PEFT adapter folder. */
function mergeLora(model: Map<string, F32Tensor>, adapterDir: string): number {
  const cfg = JSON.parse(readFileSync(join(adapterDir, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; use_rslora?: boolean };
  const scale = cfg.use_rslora ? cfg.lora_alpha / Math.sqrt(cfg.r) : cfg.lora_alpha / cfg.r;
  const adapter = readF32(join(adapterDir, 'adapter_model.safetensors'));
  let merged = 0;
  for (const [name, a] of adapter) {
    const m = /^base_model\.model\.(.+)\.lora_A\.weight$/.exec(name);
    if (!m) continue;
    const b = adapter.get(`base_model.model.${m[1]}.lora_B.weight`)!;
    const w = model.get(`${m[1]}.weight`);
    if (!w) throw new Error(`the adapter's ${m[1]} is not in the model`);
    const [rows, cols] = w.shape;
    const r = a.shape[0];
    for (let i = 0; i < rows; i++)
      for (let j = 0; j < cols; j++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += b.data[i * r + k] * a.data[k * cols + j];
        w.data[i * cols + j] += scale * s;
      }
    merged++;
  }
  return merged;
}

/** Largest |difference| between the logits of two ways of running the model, over a few prompts. */
async function logitsGap(base: string, adapter: string, merged: string, prompts: string[]): Promise<number> {
  const a = await openModel(base, { threads: Number(threads) });
  const b = await openModel(merged, { threads: Number(threads) });
  try {
    const id = (await a.model.loadAdapter(adapter)).id;
    let gap = 0;
    for (const p of prompts) {
      const tokens = a.tokenizer.encode(a.template.render([{ role: 'user', content: p }], { addGenerationPrompt: true }), { addSpecialTokens: false });
      const [x] = await a.model.logits(tokens, false, id);
      const [y] = await b.model.logits(tokens, false, 0);
      for (let i = 0; i < x.length; i++) gap = Math.max(gap, Math.abs(x[i] - y[i]));
    }
    return gap;
  } finally {
    await a.model.unload();
    await b.model.unload();
  }
}

// ------------------------------------------------------------------ the pipeline

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const show = (a: Accuracy) => `${pct(a.accuracy)} (no carry needed ${pct(a.noCarry)}, carry needed ${pct(a.carry)}, carries ${pct(a.carries)})`;
const figures = (a: Accuracy) => ({ accuracy: a.accuracy, no_carry_needed: a.noCarry, carry_needed: a.carry, carries: a.carries });

const tokenizer = writeByteTokenizer(join(work, 'tokenizer'));
writeFileSync(join(work, 'config.json'), JSON.stringify(TINY_ADDER));
const { heldOut, train } = splitProblems(SEED, HELD_OUT);
writeColdStart(join(work, 'cold-start.jsonl'), train, COLD_START);
writeGrpoPrompts(join(work, 'prompts.jsonl'), train);

const sftDir = join(work, 'sft');
aha('train', 'sft', '--full', '--config', join(work, 'config.json'), '--tokenizer', tokenizer, '--data', join(work, 'cold-start.jsonl'), '--out', sftDir,
  '--lr', SFT.lr, '--warmup', SFT.warmup, '--epochs', '1', '--batch', SFT.batch, '--seed', String(SEED));
const before = await greedyAccuracy(sftDir, heldOut, { threads: Number(threads) });
process.stderr.write(`cold start: ${show(before)}\n`);

const grpoDir = join(work, 'grpo');
aha('train', 'grpo', '--model', sftDir, '--data', join(work, 'prompts.jsonl'), '--grader', 'math,format:0.5', '--out', grpoDir, '--steps', GRPO.steps,
  '--num-generations', GRPO.numGenerations, '--prompts-per-step', GRPO.promptsPerStep, '--max-tokens', GRPO.maxTokens, '--temperature', GRPO.temperature,
  '--lr', GRPO.lr, '--rank', GRPO.rank, '--alpha', GRPO.alpha, '--seed', String(SEED));
const after = await greedyAccuracy(sftDir, heldOut, { adapter: grpoDir, threads: Number(threads) });
process.stderr.write(`after GRPO: ${show(after)}\n`);

// The merged model, written into a fresh folder that then replaces OUT.
const staged = join(work, 'merged');
rmSync(staged, { recursive: true, force: true });
mkdirSync(staged);
const weights = readF32(join(sftDir, 'model.safetensors'));
const pairs = mergeLora(weights, grpoDir);
writeF32(join(staged, 'model.safetensors'), weights);
for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) cpSync(join(sftDir, f), join(staged, f));
const gap = await logitsGap(sftDir, grpoDir, staged, heldOut.slice(0, 8).map((p) => `What is ${p.a} + ${p.b}?`));
const merged = await greedyAccuracy(staged, heldOut, { threads: Number(threads) });
process.stderr.write(`merged (${pairs} LoRA pairs, logits within ${gap.toExponential(1)} of the adapter's): ${show(merged)}\n`);
if (gap > 1e-3) throw new Error(`the merged model's logits differ from the adapter's by ${gap}`);

writeFileSync(
  join(staged, 'training.json'),
  JSON.stringify(
    {
      made_by: 'scripts/make-default-model.ts',
      task: 'two-digit addition worked in a think block (tests/fixtures/addition.ts)',
      seed: SEED,
      cold_start: { ...COLD_START, ...SFT, steps: COLD_START.count / Number(SFT.batch), full: true },
      grpo: { ...GRPO, graders: 'math,format:0.5', merged: `W += alpha/r · B·A (${pairs} pairs)` },
      held_out: { problems: HELD_OUT, greedy: { cold_start: figures(before), grpo: figures(after), merged: figures(merged) } },
    },
    null,
    2,
  ) + '\n',
);
rmSync(out, { recursive: true, force: true });
mkdirSync(resolve(out, '..'), { recursive: true });
cpSync(staged, out, { recursive: true });
if (!values.work) rmSync(work, { recursive: true, force: true });
process.stderr.write(`the default model is in ${out}\n`);
