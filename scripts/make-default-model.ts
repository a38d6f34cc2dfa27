// Makes the embedded default model, resources/default-model (issue 6): the pipeline of the proof
// that GRPO learns (tests/integration/learns.test.ts), run longer, on two tasks at once: two-digit
// addition (tests/fixtures/addition.ts) and countdown with three numbers (tests/fixtures/countdown.ts).
//
//   1. a fresh tiny Qwen3 (DEFAULT_MODEL: 3 layers of 96, 0.4M parameters) over the byte-level
//      tokenizer with a ChatML template;
//   2. cold start: `aha train sft --full` on both sloppy teachers' worked answers, mixed in one
//      file: the adder forgets most carries; the countdown player guesses blindly (up to three
//      wrong first steps, checked and rejected, before a right one) and mostly forgets that the
//      last step can multiply;
//   3. `aha train grpo` on a LoRA over it, on both tasks' prompts mixed, rewarded by the math,
//      countdown and format graders alone. Each item is scored by the grader of its kind: the
//      other finds nothing to match (math: no answer equals a countdown item's {numbers, target}
//      reference; countdown: "82" is no {numbers, target}) and gives 0, so the reward is
//      correct + 0.5 · well formed on either task (a grader's mean in the step metrics is over
//      both tasks' completions);
//   4. the adapter merged into the f32 weights (W += alpha/r · B·A): one plain HF folder that
//      `aha generate`, the app and transformers load, and that trains further like any model;
//   5. held-out greedy accuracy on each task of the cold start, of the adapter and of the merged
//      model, into training.json beside the weights (and the README).
//
// Deterministic and seeded: the same run gives the same model on one machine (thread count and
// CPU kernels fixed). Takes about 17 minutes on two otherwise idle cores.
//
//   node --import tsx scripts/make-default-model.ts [--out resources/default-model] [--threads 2] [--work DIR]
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { coldStartRows, greedyAccuracy, grpoPromptRows, question, splitProblems, type Accuracy } from '../tests/fixtures/addition.ts';
import { countdownAccuracy, countdownColdStart, countdownPrompts, countdownQuestion, splitCountdown, type CountdownAccuracy } from '../tests/fixtures/countdown.ts';
import { writeByteTokenizer } from '../tests/fixtures/byte-tokenizer.ts';
import { openModel } from '../src-main/engine/open.ts';

const root = resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { out: { type: 'string' }, threads: { type: 'string' }, work: { type: 'string' } } });
const out = resolve(values.out ?? join(root, 'resources/default-model'));
const threads = values.threads ?? '2';
const work = values.work ? resolve(values.work) : mkdtempSync(join(tmpdir(), 'aha-default-model-'));
mkdirSync(work, { recursive: true });

/** Qwen3, 3 layers of 96 over the byte-level tokenizer: 0.44M parameters (TINY_ADDER's 2 layers of 64 learn to add, not countdown). */
const DEFAULT_MODEL = {
  architectures: ['Qwen3ForCausalLM'], vocab_size: 259, hidden_size: 96, intermediate_size: 384, num_hidden_layers: 3, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 24, max_position_embeddings: 384, rms_norm_eps: 1e-6, rope_theta: 10000, tie_word_embeddings: true,
  bos_token_id: 256, eos_token_id: 258, initializer_range: 0.02,
};
const SEED = 11;
const ADDITION_COLD_START = { count: 8000, carryShare: 0.7, forgetRate: 0.6, seed: SEED };
const COUNTDOWN_COLD_START = { count: 28000, missShares: [0.4, 0.3, 0.2, 0.1], forgetRate: 0.6, seed: SEED };
/** Each countdown problem of the training split is a GRPO prompt this many times, its numbers in another order each time. */
const COUNTDOWN_ORDERS = 6;
const SFT = { lr: '3e-3', warmup: '20', batch: '8' };
const GRPO = { steps: '500', numGenerations: '8', promptsPerStep: '8', maxTokens: '128', temperature: '0.6', lr: '1e-3', rank: '8', alpha: '16' };
const GRADERS = 'math,countdown,format:0.5';
const HELD_OUT = { addition: 500, countdown: 300 };

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
const show = (a: Accuracy, c: CountdownAccuracy) =>
  `addition ${pct(a.accuracy)} (no carry needed ${pct(a.noCarry)}, carry needed ${pct(a.carry)}, carries ${pct(a.carries)}); ` +
  `countdown ${pct(c.accuracy)} (multiplying last needed ${pct(c.timesNeeded)}, not needed ${pct(c.noTimesNeeded)}, multiplies last where needed ${pct(c.multipliesLast)}, ` +
  `right at the first guess ${pct(c.firstGuess)}, ${c.guesses.toFixed(2)} guesses on average)`;
const figures = (a: Accuracy, c: CountdownAccuracy) => ({
  addition: { accuracy: a.accuracy, no_carry_needed: a.noCarry, carry_needed: a.carry, carries: a.carries },
  countdown: {
    accuracy: c.accuracy, multiplying_last_needed: c.timesNeeded, not_needed: c.noTimesNeeded, multiplies_last_where_needed: c.multipliesLast,
    right_at_first_guess: c.firstGuess, guesses: c.guesses,
  },
});
const threadCount = Number(threads);
const accuracy = async (model: string, adapter?: string) => {
  const a = await greedyAccuracy(model, add.heldOut, { adapter, threads: threadCount });
  const c = await countdownAccuracy(model, countdown.heldOut, { adapter, threads: threadCount });
  return { a, c };
};

const t0 = performance.now();
const tokenizer = writeByteTokenizer(join(work, 'tokenizer'));
writeFileSync(join(work, 'config.json'), JSON.stringify(DEFAULT_MODEL));
const add = splitProblems(SEED, HELD_OUT.addition);
const countdown = splitCountdown(SEED, HELD_OUT.countdown);
const jsonl = (rows: string[]) => rows.join('\n') + '\n';
writeFileSync(join(work, 'cold-start.jsonl'), jsonl([...coldStartRows(add.train, ADDITION_COLD_START), ...countdownColdStart(countdown.train, COUNTDOWN_COLD_START)]));
const countdownRows = Array.from({ length: COUNTDOWN_ORDERS }, (_, k) => countdownPrompts(countdown.train, SEED + k)).flat();
writeFileSync(join(work, 'prompts.jsonl'), jsonl([...grpoPromptRows(add.train), ...countdownRows]));

const sftDir = join(work, 'sft');
const sftSteps = (ADDITION_COLD_START.count + COUNTDOWN_COLD_START.count) / Number(SFT.batch);
aha('train', 'sft', '--full', '--config', join(work, 'config.json'), '--tokenizer', tokenizer, '--data', join(work, 'cold-start.jsonl'), '--out', sftDir,
  '--lr', SFT.lr, '--warmup', SFT.warmup, '--epochs', '1', '--batch', SFT.batch, '--seed', String(SEED));
const before = await accuracy(sftDir);
process.stderr.write(`cold start: ${show(before.a, before.c)}\n`);

const grpoDir = join(work, 'grpo');
aha('train', 'grpo', '--model', sftDir, '--data', join(work, 'prompts.jsonl'), '--grader', GRADERS, '--out', grpoDir, '--steps', GRPO.steps,
  '--num-generations', GRPO.numGenerations, '--prompts-per-step', GRPO.promptsPerStep, '--max-tokens', GRPO.maxTokens, '--temperature', GRPO.temperature,
  '--lr', GRPO.lr, '--rank', GRPO.rank, '--alpha', GRPO.alpha, '--seed', String(SEED));
const after = await accuracy(sftDir, grpoDir);
process.stderr.write(`after GRPO: ${show(after.a, after.c)}\n`);

// The merged model, written into a fresh folder that then replaces OUT.
const staged = join(work, 'merged');
rmSync(staged, { recursive: true, force: true });
mkdirSync(staged);
const weights = readF32(join(sftDir, 'model.safetensors'));
const pairs = mergeLora(weights, grpoDir);
writeF32(join(staged, 'model.safetensors'), weights);
for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) cpSync(join(sftDir, f), join(staged, f));
const gapPrompts = [...add.heldOut.slice(0, 4).map(question), ...countdown.heldOut.slice(0, 4).map(countdownQuestion)];
const gap = await logitsGap(sftDir, grpoDir, staged, gapPrompts);
const merged = await accuracy(staged);
process.stderr.write(`merged (${pairs} LoRA pairs, logits within ${gap.toExponential(1)} of the adapter's): ${show(merged.a, merged.c)}\n`);
if (gap > 1e-3) throw new Error(`the merged model's logits differ from the adapter's by ${gap}`);
const minutes = (performance.now() - t0) / 60000;

writeFileSync(
  join(staged, 'training.json'),
  JSON.stringify(
    {
      made_by: 'scripts/make-default-model.ts',
      tasks: {
        addition: 'two-digit addition worked column by column in a think block (tests/fixtures/addition.ts)',
        countdown: 'three numbers from 1 to 9, a target from 10 to 99 that (x op y) op z reaches: guess and check worked in a think block (tests/fixtures/countdown.ts)',
      },
      seed: SEED,
      model: DEFAULT_MODEL,
      cold_start: { addition: ADDITION_COLD_START, countdown: COUNTDOWN_COLD_START, ...SFT, steps: sftSteps, full: true },
      grpo: { ...GRPO, graders: GRADERS, prompts: { addition: add.train.length, countdown: countdownRows.length }, merged: `W += alpha/r · B·A (${pairs} pairs)` },
      held_out: {
        problems: HELD_OUT,
        greedy: { cold_start: figures(before.a, before.c), grpo: figures(after.a, after.c), merged: figures(merged.a, merged.c) },
      },
      minutes_on_this_machine: Number(minutes.toFixed(1)),
    },
    null,
    2,
  ) + '\n',
);
rmSync(out, { recursive: true, force: true });
mkdirSync(resolve(out, '..'), { recursive: true });
cpSync(staged, out, { recursive: true });
if (!values.work) rmSync(work, { recursive: true, force: true });
process.stderr.write(`the default model is in ${out} (${minutes.toFixed(1)} minutes)\n`);
