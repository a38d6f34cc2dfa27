// An SFT run, of a LoRA adapter or (full training, src-main/train/full.ts) of every parameter of a
// small model: the data (src-main/train/sft.ts) in length-bucketed batches, one native optimizer
// step per `gradAccum` batches (forward, backward, clipping and AdamW run on the addon's worker
// threads), metrics per step, and checkpoints that a killed run resumes from exactly: the
// adapter in PEFT layout (or the model as an HF folder), the optimizer state, the data order's
// RNG state, the step and the position in the data.
//
// Layout of OUT:
//   adapter_config.json, adapter_model.safetensors   the final adapter (written at the end), or the
//                                                    model's files (config.json, model.safetensors, tokenizer)
//   checkpoints/step-000040/                          adapter or model + optimizer.{safetensors,json} + trainer_state.json
// A checkpoint is written into checkpoints/.tmp-… and renamed into place, so a kill leaves either
// the whole checkpoint or none of it.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ModelInfo, NativeModel, TrainStepResult } from '../engine/native.ts';
import { native } from '../engine/native.ts';
import type { RunController } from './control.ts';
import { IGNORE, readSftExamples, type SftSequence, type SftTokenizer } from './sft.ts';

export type Schedule = 'constant' | 'linear' | 'cosine';

/** What defines a run; a resumed run must be given the same values (or none). */
export interface SftConfig {
  /** Every parameter of the model is trained (full.ts), not a LoRA adapter: rank, alpha, targets and rslora are unused. */
  full: boolean;
  rank: number;
  alpha: number;
  targets: string[];
  rslora: boolean;
  /** LoRA dropout on the adapter branch's input (PEFT's lora_dropout). */
  dropout: number;
  lr: number;
  schedule: Schedule;
  warmup: number;
  weightDecay: number;
  maxGradNorm: number;
  epochs: number;
  batch: number;
  gradAccum: number;
  maxLen: number;
  seed: number;
  /** Activation checkpointing (LoRA): each layer recomputed in the backward from its input; the same numbers, less memory. */
  checkpointLayers: boolean;
}

/**
 * The LoRA target names the engine knows (LoraConfig in native/include/aha/train.h), matched as
 * PEFT matches them: a module is adapted when its name equals an entry or ends with "." + entry.
 * The dense family has the first seven; the deepseek family q_proj (or q_a_proj, q_b_proj),
 * kv_a_proj_with_mqa, kv_b_proj, o_proj, and gate/up/down_proj in its dense first layers
 * ("mlp.gate_proj") and shared experts ("shared_experts.gate_proj"); the bare names are both.
 * Its routed experts only by their own names, experts.gate_up_proj and experts.down_proj (PEFT's
 * target_parameters on transformers' fused expert weights). "all-linear" is every linear module
 * the model has (not the routed experts), written out in the adapter's config.
 */
export const LORA_TARGET_NAMES = [
  'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj',
  'q_a_proj', 'q_b_proj', 'kv_a_proj_with_mqa', 'kv_b_proj',
  'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'shared_experts.gate_proj', 'shared_experts.up_proj', 'shared_experts.down_proj',
  'experts.gate_up_proj', 'experts.down_proj', 'all-linear',
];

export const SFT_DEFAULTS: SftConfig = {
  full: false,
  rank: 8,
  alpha: 16,
  targets: ['all-linear'],
  rslora: false,
  dropout: 0,
  lr: 2e-4,
  schedule: 'cosine',
  warmup: 0,
  weightDecay: 0,
  maxGradNorm: 1,
  epochs: 1,
  batch: 4,
  gradAccum: 1,
  maxLen: 1024,
  seed: 0,
  checkpointLayers: false,
};

export interface StepMetrics {
  step: number;
  totalSteps: number;
  epoch: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokensPerSecond: number;
  tokens: number;
  targetTokens: number;
  /** The step's time (forward, backward and the optimizer: one engine call). */
  seconds: number;
}

export interface SftEvents {
  warn(message: string): void;
  /** Before the first step: the step the run starts after (a resumed run's checkpoint) and its last. */
  start?(step: number, totalSteps: number): void;
  step(m: StepMetrics): void;
  checkpoint(step: number, dir: string): void;
}

/** mulberry32: a small seeded generator whose whole state is one uint32 (saved in checkpoints). */
export class Rng {
  constructor(public state: number) {
    this.state = state >>> 0;
  }
  static fromSeed(seed: number): Rng {
    return new Rng((Math.imul(seed >>> 0, 0x9e3779b1) ^ 0x85ebca6b) >>> 0);
  }
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/** Batches of example indices for one epoch: shuffled, then sorted by length within windows of
 * 16 batches (so a batch holds similar lengths: little padding work), the batches shuffled. */
export function planEpoch(lengths: number[], batch: number, rng: Rng): number[][] {
  const order = rng.shuffle(lengths.map((_, i) => i));
  const window = batch * 16;
  const batches: number[][] = [];
  for (let w = 0; w < order.length; w += window) {
    const chunk = order.slice(w, w + window).sort((a, b) => lengths[b] - lengths[a] || a - b);
    for (let i = 0; i < chunk.length; i += batch) batches.push(chunk.slice(i, i + batch));
  }
  return rng.shuffle(batches);
}

/** Cuts examples to maxLen tokens; those left with no target token are dropped. */
export function truncateExamples<T extends SftSequence>(examples: T[], maxLen: number): { kept: T[]; truncated: number; dropped: number } {
  const kept: T[] = [];
  let truncated = 0;
  let dropped = 0;
  for (const e of examples) {
    if (e.inputIds.length <= maxLen) {
      kept.push(e);
      continue;
    }
    truncated++;
    const cut = { ...e, inputIds: e.inputIds.slice(0, maxLen), labels: e.labels.slice(0, maxLen) };
    if (cut.labels.slice(1).some((l) => l !== IGNORE)) kept.push(cut);
    else dropped++;
  }
  return { kept, truncated, dropped };
}

interface TrainerState {
  format: 1;
  step: number;
  totalSteps: number;
  /** The epoch the next step reads from, and the next batch of its plan. */
  epoch: number;
  batch: number;
  /** The RNG state the epoch's plan was drawn from (the plan is drawn again on resume). */
  epochRng: number;
  data: { file: string; sha256: string; examples: number };
  config: SftConfig;
  model: string;
}

const CKPT = 'checkpoints';

function stepDir(out: string, step: number): string {
  return join(out, CKPT, `step-${String(step).padStart(6, '0')}`);
}

/** The newest complete checkpoint in OUT, or undefined; leftovers of interrupted writes are removed. */
export function latestCheckpoint(out: string): string | undefined {
  const dir = join(out, CKPT);
  if (!existsSync(dir)) return undefined;
  let best: { step: number; path: string } | undefined;
  for (const name of readdirSync(dir)) {
    if (name.startsWith('.tmp-')) {
      rmSync(join(dir, name), { recursive: true, force: true });
      continue;
    }
    const m = /^step-(\d+)$/.exec(name);
    if (!m || !existsSync(join(dir, name, 'trainer_state.json'))) continue;
    const step = Number(m[1]);
    if (!best || step > best.step) best = { step, path: join(dir, name) };
  }
  return best?.path;
}

/** Adapter (or model) + optimizer + trainer_state.json (`state`) into checkpoints/step-N of OUT, atomically. */
export async function writeCheckpoint(out: string, trainer: { save(dir: string): Promise<void> }, state: { step: number }): Promise<string> {
  const final = stepDir(out, state.step);
  const tmp = join(out, CKPT, `.tmp-step-${state.step}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await trainer.save(tmp);
  writeFileSync(join(tmp, 'trainer_state.json'), JSON.stringify(state, null, 2) + '\n');
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  return final;
}

/** What a resumed run may change (the optimizer's schedule and length); the rest defines the run. */
const RESUME_MAY_CHANGE: (keyof SftConfig)[] = ['lr', 'schedule', 'warmup', 'maxGradNorm', 'epochs', 'checkpointLayers'];

function sameConfig(a: SftConfig, b: SftConfig): (keyof SftConfig)[] {
  return (Object.keys(a) as (keyof SftConfig)[]).filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

/** What runSft steps: a LoRA trainer on a loaded model, or a full trainer (full.ts). */
export interface SftTrainer {
  /** Optimizer steps taken when it was created (a resumed trainer's count). */
  readonly initialStep: number;
  step(opts: { microBatches: { inputIds: number[]; labels: number[] }[][]; lr: number }): Promise<TrainStepResult>;
  /** Everything a checkpoint holds but trainer_state.json, into an existing folder. */
  save(dir: string): Promise<void>;
}

/** The files of a LoRA run's last checkpoint that become its output in OUT. */
export const ADAPTER_FILES = ['adapter_model.safetensors', 'adapter_config.json'];

/** runSft's trainer for LoRA on `model`: a fresh PEFT-initialized adapter, or a checkpoint's. */
export function loraTrainer(model: NativeModel, modelPath: string): SftRun['createTrainer'] {
  return (config, resumeFrom) =>
    model.createTrainer(
      resumeFrom
        ? { resume: resumeFrom, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm, checkpointLayers: config.checkpointLayers }
        : {
            init: {
              rank: config.rank, alpha: config.alpha, targetModules: config.targets, useRslora: config.rslora, dropout: config.dropout, seed: config.seed,
              baseModel: modelPath,
            },
            weightDecay: config.weightDecay,
            maxGradNorm: config.maxGradNorm,
            checkpointLayers: config.checkpointLayers,
          },
    );
}

/** Bytes a LoRA run will hold at its peak, before it starts (the engine's train-mode buffers, f32). */
export interface MemoryEstimate {
  weights: number;
  /** Saved activations of one micro-batch of `batch` × `maxLen` tokens, plus the backward's transients. */
  activations: number;
  /** The same with checkpointLayers (each layer's input, plus one layer's full set). */
  activationsCheckpointed: number;
  /** Adapter, its gradients (f32 and the f64 accumulator) and AdamW's two moments. */
  adapter: number;
  total: number;
}

/** Whether a target entry names a module path by PEFT's rule (the full path, or a dot-suffix of it). */
const names = (entry: string, path: string) => {
  const expert = (n: string) => /(^|\.)experts\.(gate_up_proj|down_proj)$/.test(n);
  if (expert(entry) !== expert(path)) return false;  // the routed experts only by their own names
  return entry === 'all-linear' || path === entry || path.endsWith(`.${entry}`);
};

export function loraMemoryEstimate(info: ModelInfo, config: SftConfig): MemoryEstimate {
  const c = info.config, H = c.hiddenSize, F = c.intermediateSize, L = c.layers, r = config.rank;
  const tokens = config.batch * config.maxLen;
  // Each adaptable module: its path in a layer, (in, out), and in how many layers it is.
  let modules: { path: string; shape: [number, number]; layers: number; experts?: number }[];
  let perLayer: number, transient: number;
  if (c.deepseek) {
    // deepseek_lora.cpp DsSaved: x, xn1, x_mid, xn2; the query path; kv_a's output, the latent,
    // kv_b's output; attention's padded Q, K, V and output; attn; the MLP (dense layer or shared
    // experts) or, in MoE layers, each routed expert's gate, up, h and output for top-k slots.
    const d = c.deepseek, nh = c.heads, qk = d.qkNopeHeadDim + d.qkRopeHeadDim, D = Math.max(qk, d.vHeadDim), QD = nh * qk;
    const KVA = d.kvLoraRank + d.qkRopeHeadDim, KVB = nh * (d.qkNopeHeadDim + d.vHeadDim), S = d.moeIntermediateSize * d.sharedExperts;
    const moeLayers = d.routedExperts > 0 ? L - d.denseLayers : 0, denseLayers = L - moeLayers;
    modules = [
      ...(d.qLoraRank > 0
        ? [{ path: 'self_attn.q_a_proj', shape: [H, d.qLoraRank] as [number, number], layers: L }, { path: 'self_attn.q_b_proj', shape: [d.qLoraRank, QD] as [number, number], layers: L }]
        : [{ path: 'self_attn.q_proj', shape: [H, QD] as [number, number], layers: L }]),
      { path: 'self_attn.kv_a_proj_with_mqa', shape: [H, KVA], layers: L },
      { path: 'self_attn.kv_b_proj', shape: [d.kvLoraRank, KVB], layers: L },
      { path: 'self_attn.o_proj', shape: [nh * d.vHeadDim, H], layers: L },
      { path: 'mlp.gate_proj', shape: [H, F], layers: denseLayers },
      { path: 'mlp.up_proj', shape: [H, F], layers: denseLayers },
      { path: 'mlp.down_proj', shape: [F, H], layers: denseLayers },
      ...(S > 0
        ? (['gate_proj', 'up_proj', 'down_proj'] as const).map((m) => ({ path: `mlp.shared_experts.${m}`, shape: (m === 'down_proj' ? [S, H] : [H, S]) as [number, number], layers: moeLayers }))
        : []),
      { path: 'mlp.experts.gate_up_proj', shape: [H, 2 * d.moeIntermediateSize], layers: moeLayers, experts: d.routedExperts },
      { path: 'mlp.experts.down_proj', shape: [d.moeIntermediateSize, H], layers: moeLayers, experts: d.routedExperts },
    ];
    const attention = 4 * H + 2 * d.qLoraRank + QD + KVA + d.kvLoraRank + KVB + 4 * nh * D + nh * d.vHeadDim + nh + 4;
    const ffn = (denseLayers * 3 * F + moeLayers * (3 * S + d.expertsPerToken * (3 * d.moeIntermediateSize + H) + d.routedExperts + 2 * d.expertsPerToken)) / L;
    perLayer = attention + ffn;
    transient = tokens * (3 * Math.max(F, S) + 2 * H + 4 * nh * D + KVB) + tokens * 3 * H + 2 * 64 * info.vocabSize;
  } else {
    // Per token per layer (dense_lora.cpp LayerSaved): x, xn1, x_mid, xn2; q, k, v, attn (and the
    // unnormed q, k for qwen3); gate, up, h; x Aᵀ of each target; norm and softmax statistics.
    const QD = c.heads * c.headDim, KD = c.kvHeads * c.headDim;
    const qkNorm = info.architecture === 'qwen3';
    modules = (
      [['self_attn.q_proj', [H, QD]], ['self_attn.k_proj', [H, KD]], ['self_attn.v_proj', [H, KD]], ['self_attn.o_proj', [QD, H]],
        ['mlp.gate_proj', [H, F]], ['mlp.up_proj', [H, F]], ['mlp.down_proj', [F, H]]] as [string, [number, number]][]
    ).map(([path, shape]) => ({ path, shape, layers: L }));
    perLayer = 4 * H + 2 * QD + 2 * KD + (qkNorm ? QD + KD : 0) + 3 * F + c.heads + 2;
    // The backward's transients for one layer, the final norm, and the lm head's logits chunk.
    transient = tokens * (3 * F + 2 * H + 2 * QD + 2 * KD) + tokens * 3 * H + 2 * 64 * info.vocabSize;
  }
  const adapted = modules.filter((m) => m.layers > 0 && config.targets.some((t) => names(t, m.path)));
  perLayer += (adapted.length * r * adapted.reduce((n, m) => n + m.layers, 0)) / Math.max(1, adapted.length * L);  // x Aᵀ of each target
  const loraParams = adapted.reduce((n, m) => n + m.layers * (m.experts ?? 1) * r * (m.shape[0] + m.shape[1]), 0);
  const f = 4;
  const est = {
    weights: info.weightBytes,
    activations: f * (tokens * perLayer * L + transient),
    activationsCheckpointed: f * (tokens * (H * L + perLayer) + transient),
    adapter: loraParams * (4 * f + 8),
    total: 0,
  };
  est.total = est.weights + (config.checkpointLayers ? est.activationsCheckpointed : est.activations) + est.adapter;
  return est;
}

export function formatMemoryEstimate(e: MemoryEstimate, checkpointLayers: boolean): string {
  const gb = (b: number) => (b >= 1e9 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(0)} MB`);
  const act = checkpointLayers ? e.activationsCheckpointed : e.activations;
  const other = checkpointLayers ? `${gb(e.activations)} without --checkpoint-layers` : `${gb(e.activationsCheckpointed)} with --checkpoint-layers`;
  return `memory estimate: ${gb(e.total)} (weights ${gb(e.weights)}, activations ${gb(act)} (${other}), adapter and AdamW ${gb(e.adapter)})`;
}

export interface SftRun {
  /** The trainer: fresh (from `config`), or resumed from a checkpoint folder. */
  createTrainer(config: SftConfig, resumeFrom?: string): Promise<SftTrainer>;
  /** The files of the last checkpoint that become the run's output in OUT (ADAPTER_FILES, or the model's). */
  outputs: string[];
  /** The model (or config) the run starts from, as trainer_state.json records it. */
  modelPath: string;
  dataFile: string;
  dataText: string;
  tok?: SftTokenizer;
  out: string;
  config: SftConfig;
  /** Config keys the user gave explicitly (a resumed run checks them against the checkpoint's). */
  given: (keyof SftConfig)[];
  resume: boolean;
  checkpointEvery: number;
  events: SftEvents;
  /** Asked after every step: pause there, or stop there with a checkpoint (Ctrl-C). */
  control?: RunController;
}

export interface SftResult {
  steps: number;
  /** Ended early by control.stop(): the checkpoint to --resume from (no final adapter yet). */
  stoppedAt?: string;
  firstLoss: number;
  lastLoss: number;
  /** OUT: where the adapter (or the model) is. */
  output: string;
  resumedFrom?: string;
}

export async function runSft(run: SftRun): Promise<SftResult> {
  const { out, events } = run;
  let config = run.config;
  const sha256 = createHash('sha256').update(run.dataText).digest('hex');
  let state: TrainerState | undefined;
  let resumedFrom: string | undefined;
  if (run.resume) {
    resumedFrom = latestCheckpoint(out);
    if (!resumedFrom) throw new Error(`--resume: no checkpoint in ${join(out, CKPT)}`);
    const saved = JSON.parse(readFileSync(join(resumedFrom, 'trainer_state.json'), 'utf8')) as TrainerState;
    state = saved;
    const differ = sameConfig(saved.config, config).filter((k) => run.given.includes(k));
    const fixed = differ.filter((k) => !RESUME_MAY_CHANGE.includes(k));
    if (fixed.length)
      throw new Error(`--resume: ${fixed.map((k) => `${k} ${JSON.stringify(config[k])} differs from the run's ${JSON.stringify(saved.config[k])}`).join('; ')} (${resumedFrom})`);
    if (state.data.sha256 !== sha256) throw new Error(`--resume: ${run.dataFile} is not the data the run in ${out} was trained on (its content changed)`);
    const changed = differ.filter((k) => RESUME_MAY_CHANGE.includes(k));
    if (changed.length)
      events.warn(`resuming with ${changed.map((k) => `${k} ${JSON.stringify(config[k])} (was ${JSON.stringify(saved.config[k])})`).join(', ')}: the run no longer continues exactly as it would have`);
    config = { ...state.config, ...Object.fromEntries(changed.map((k) => [k, config[k]])) };
  }
  if (!config.full && (config.rank < 1 || !Number.isInteger(config.rank))) throw new Error(`--rank must be an integer ≥ 1, got ${config.rank}`);

  // Data: rows that cannot be used and over-long examples are counted and reported, not fatal.
  const { examples: rows, skipped } = readSftExamples(run.dataText, run.tok);
  if (skipped.length)
    events.warn(
      `skipped ${skipped.length} of ${skipped.length + rows.length} rows of ${run.dataFile}: ` +
        skipped.slice(0, 3).map((s) => `line ${s.line}: ${s.reason}`).join('; ') +
        (skipped.length > 3 ? '; …' : ''),
    );
  const { kept: examples, truncated, dropped } = truncateExamples(rows, config.maxLen);
  if (truncated)
    events.warn(`${truncated} example${truncated > 1 ? 's' : ''} longer than --max-len ${config.maxLen} tokens ${truncated > 1 ? 'were' : 'was'} truncated${dropped ? ` (${dropped} dropped: no answer token left)` : ''}`);
  if (!examples.length) throw new Error(`${run.dataFile}: no usable examples`);
  const lengths = examples.map((e) => e.inputIds.length);
  const batchesPerEpoch = planEpoch(lengths, config.batch, new Rng(0)).length;
  const stepsPerEpoch = Math.ceil(batchesPerEpoch / config.gradAccum);
  const totalSteps = stepsPerEpoch * config.epochs;

  const trainer = await run.createTrainer(config, resumedFrom);
  if (state && trainer.initialStep !== state.step) throw new Error(`${resumedFrom}: the optimizer has ${trainer.initialStep} steps, trainer_state.json says ${state.step}`);

  let step = state?.step ?? 0;
  let epoch = state?.epoch ?? 0;
  let pos = state?.batch ?? 0;
  let epochRng = state?.epochRng ?? Rng.fromSeed(config.seed).state;
  let lastCheckpoint = resumedFrom;
  let firstLoss = NaN;
  let lastLoss = NaN;
  const snapshot = (): TrainerState => ({
    format: 1,
    step,
    totalSteps,
    epoch,
    batch: pos,
    epochRng,
    data: { file: run.dataFile, sha256, examples: examples.length },
    config,
    model: run.modelPath,
  });
  const seq = (i: number) => ({ inputIds: examples[i].inputIds, labels: examples[i].labels });
  events.start?.(step, totalSteps);

  while (step < totalSteps) {
    const rng = new Rng(epochRng);
    const plan = planEpoch(lengths, config.batch, rng);
    const nextEpochRng = rng.state;
    while (pos < plan.length && step < totalSteps) {
      const micro = plan.slice(pos, pos + config.gradAccum);
      const lr = native().lrAt(config.schedule, config.lr, step, config.warmup, totalSteps);
      const t0 = performance.now();
      let r;
      try {
        r = await trainer.step({ microBatches: micro.map((b) => b.map(seq)), lr });
      } catch (e) {
        throw new Error(
          `${(e as Error).message}. ` +
            (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint} (continue from it with --resume and a lower --lr).` : 'No checkpoint was written yet.'),
        );
      }
      const seconds = (performance.now() - t0) / 1000;
      step++;
      pos += micro.length;
      const epochProgress = epoch + pos / plan.length;
      const epochDone = pos >= plan.length;
      if (epochDone) {
        epoch++;
        pos = 0;
        epochRng = nextEpochRng;
      }
      if (Number.isNaN(firstLoss)) firstLoss = r.loss;
      lastLoss = r.loss;
      events.step({
        step,
        totalSteps,
        epoch: epochProgress,
        loss: r.loss,
        lr,
        gradNorm: r.gradNorm,
        tokensPerSecond: r.tokens / Math.max(seconds, 1e-9),
        tokens: r.tokens,
        targetTokens: r.targetTokens,
        seconds,
      });
      if (run.checkpointEvery > 0 && step % run.checkpointEvery === 0 && step < totalSteps) {
        lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
        events.checkpoint(step, lastCheckpoint);
      }
      if (run.control && step < totalSteps) {
        if (run.control.holding && lastCheckpoint !== stepDir(out, step)) {
          lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
          events.checkpoint(step, lastCheckpoint);
        }
        if (await run.control.between()) return { steps: step, firstLoss, lastLoss, output: out, resumedFrom, stoppedAt: lastCheckpoint };
      }
      if (epochDone) break;  // the next epoch draws its own plan
    }
  }
  // The final adapter (PEFT layout) or model in OUT, and a last checkpoint.
  lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
  events.checkpoint(step, lastCheckpoint);
  for (const f of run.outputs) {
    writeFileSync(join(out, `.${f}.tmp`), readFileSync(join(lastCheckpoint, f)));
    renameSync(join(out, `.${f}.tmp`), join(out, f));
  }
  return { steps: step, firstLoss, lastLoss, output: out, resumedFrom };
}
