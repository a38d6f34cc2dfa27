// The GRPO loop (DESIGN.md §4); the compute is the engine's, the loop is this file.
//
// Kept from PPO/GRPO: G samples per prompt from the current policy (the adapter being trained),
// group-relative advantages, the clipped surrogate, an optional k3 KL to the reference. With one
// update per batch of rollouts (μ = 1) the ratio is 1 and the clip never bites; the loss is then
// the policy gradient A·∇log p, normalized per TRL's loss_type. Dropped: the value model and GAE,
// a second model for the reference (the engine switches the adapter off), several epochs over
// one batch of rollouts.
//
// One step: a batch of prompts, each rendered through the chat template → G completions each in
// one batched generate call with the trained adapter (the engine shares a prompt's KV blocks
// across its G copies) → every grader on every completion, in parallel → reward = Σ weight ·
// score → trainer.grpoStep (advantages, the loss, backward and AdamW in the engine) → metrics and
// the step's rollouts.
import type { ChatTemplate } from '../chat/template.ts';
import type { Grader } from '../services/graders/compose.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';
import type { GrpoLossOptions, NativeModel, NativeTrainer } from '../engine/native.ts';
import type { RunController } from './control.ts';
import { Rng } from './sft-run.ts';

export interface GrpoConfig {
  /** Completions per prompt (G). */
  numGenerations: number;
  promptsPerStep: number;
  maxCompletionTokens: number;
  /** Sampling temperature; the loss takes log-probs at the same temperature. */
  temperature: number;
  topP?: number;
  lr: number;
  lossType: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';
  beta: number;
  epsilon: number;
  epsilonHigh?: number;
  scaleRewards: 'group' | 'batch' | 'none';
  maskTruncatedCompletions: boolean;
  /** Packing bound of the train step (memory); 0: the whole batch at once. */
  microBatchTokens: number;
  seed: number;
}

/** DESIGN.md §4 and TRL's GRPOConfig: G = 8, β = 0, ε = 0.2, temperature 1, dapo, lr 5e-6. */
export const GRPO_DEFAULTS: GrpoConfig = {
  numGenerations: 8,
  promptsPerStep: 4,
  maxCompletionTokens: 256,
  temperature: 1.0,
  lr: 5e-6,
  lossType: 'dapo',
  beta: 0,
  epsilon: 0.2,
  scaleRewards: 'group',
  maskTruncatedCompletions: false,
  microBatchTokens: 0,
  seed: 0,
};

export interface GrpoPrompt {
  prompt: string;
  systemPrompt?: string;
  /** What the graders compare against (an answer, tests, a countdown target). */
  reference?: unknown;
}

export interface WeightedGrader {
  grader: Grader;
  weight: number;
}

export interface GrpoRollout {
  prompt: string;
  completion: string;
  completionTokens: number[];
  truncated: boolean;
  /** Score of each grader by name, and their weighted sum. */
  scores: Record<string, number>;
  explanations: Record<string, string>;
  reward: number;
  advantage: number;
  /** The policy's log-prob of each completion token in the train step (empty when masked). */
  logprobs: number[];
}

export interface GrpoStepMetrics {
  step: number;
  lr: number;
  loss: number;
  reward: { mean: number; std: number };
  /** Per grader name: mean and std of its (unweighted) scores. */
  rewards: Record<string, { mean: number; std: number }>;
  fracRewardZeroStd: number;
  completionLength: { mean: number; min: number; max: number; clippedShare: number };
  clipRatio: { lowMean: number; highMean: number; regionMean: number; lowMin: number; highMax: number };
  /** null with beta 0 (no reference pass). */
  kl: number | null;
  entropy: number;
  gradNorm: number;
  /** Generated tokens per second of the rollout, and trained tokens per second of the step. */
  rolloutTokensPerSecond: number;
  trainTokensPerSecond: number;
  /** policy = forward + backward: the train-mode forward with the adapter, then the lm head's log-probs and the backward. */
  seconds: { rollout: number; grading: number; reference: number; policy: number; forward: number; backward: number; optimizer: number; total: number };
}

export interface GrpoContext {
  model: NativeModel;
  trainer: NativeTrainer;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  graders: WeightedGrader[];
}

/** TRL's nanstd over all values: the unbiased std (0 for fewer than two). */
function stats(xs: number[]): { mean: number; std: number } {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const std = xs.length > 1 ? Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (xs.length - 1)) : 0;
  return { mean, std };
}

/** The prompt's token ids: the chat template's rendering with the generation prompt. */
export function promptTokens(p: GrpoPrompt, tokenizer: Tokenizer, template: ChatTemplate): number[] {
  const messages = [...(p.systemPrompt ? [{ role: 'system' as const, content: p.systemPrompt }] : []), { role: 'user' as const, content: p.prompt }];
  return tokenizer.encode(template.render(messages, { addGenerationPrompt: true }), { addSpecialTokens: false });
}

/**
 * KV cache tokens a step's rollouts need at most: all promptsPerStep × G completions at once, each
 * as long as the data's longest prompt plus maxCompletionTokens, in whole cache blocks (16 tokens;
 * a completion forked from its prompt copies the prompt's last, partly filled block), and the
 * prompts' own sequences beside them. A fresh load's default cache, two contexts, is far too small
 * for a group of a small model's completions.
 */
export function rolloutCacheTokens(dataText: string, tokenizer: Tokenizer, template: ChatTemplate, c: Pick<GrpoConfig, 'promptsPerStep' | 'numGenerations' | 'maxCompletionTokens'>): number {
  const BLOCK = 16;
  const longest = readGrpoPrompts(dataText).prompts.reduce((m, p) => Math.max(m, promptTokens(p, tokenizer, template).length), 0);
  const blocks = Math.ceil((longest + c.maxCompletionTokens) / BLOCK) + 1;
  return c.promptsPerStep * (c.numGenerations + 1) * blocks * BLOCK;
}

function validate(c: GrpoConfig): void {
  if (!Number.isInteger(c.numGenerations) || c.numGenerations < 2) throw new Error(`numGenerations must be an integer ≥ 2 (a group needs a spread), got ${c.numGenerations}`);
  if (!Number.isInteger(c.maxCompletionTokens) || c.maxCompletionTokens < 1) throw new Error(`maxCompletionTokens must be an integer ≥ 1, got ${c.maxCompletionTokens}`);
  if (!(c.temperature > 0)) throw new Error(`the temperature must be > 0, got ${c.temperature}`);
}

/** One GRPO step on `items` (the step's prompts): rollouts, grading, the engine's train step. */
export async function grpoStep(ctx: GrpoContext, config: GrpoConfig, items: GrpoPrompt[], step: number): Promise<{ metrics: GrpoStepMetrics; rollouts: GrpoRollout[] }> {
  validate(config);
  if (!items.length) throw new Error('a GRPO step needs at least one prompt');
  if (!ctx.graders.length) throw new Error('a GRPO step needs at least one grader');
  const G = config.numGenerations;
  const t0 = performance.now();

  // Rollouts: G copies of each prompt in one batched call, seeded per (seed, step, completion).
  const prompts = items.map((p) => promptTokens(p, ctx.tokenizer, ctx.template));
  const seeds = new Rng((config.seed ^ Math.imul(step + 1, 0x9e3779b1)) >>> 0);
  const requests = prompts.flatMap((prompt) =>
    Array.from({ length: G }, () => ({
      prompt,
      adapter: ctx.trainer.adapterId,
      maxTokens: config.maxCompletionTokens,
      temperature: config.temperature,
      ...(config.topP !== undefined ? { topP: config.topP } : {}),
      seed: Math.floor(seeds.next() * 2 ** 31),
    })),
  );
  const generated = await ctx.model.generate(requests);
  const t1 = performance.now();
  for (const [i, g] of generated.entries())
    if (!g.tokens.length) throw new Error(`prompt ${Math.floor(i / G)} leaves no room for a completion in the model's context (${g.finishReason})`);

  // Grading: every grader on every completion, all at once.
  const texts = generated.map((g) => ctx.tokenizer.decode(g.tokens, { skipSpecialTokens: true }));
  const graded = await Promise.all(
    generated.map((g, i) => {
      const item = items[Math.floor(i / G)];
      return Promise.all(ctx.graders.map((w) => Promise.resolve(w.grader.grade({ prompt: item.prompt, completion: texts[i], reference: item.reference, completionTokens: g.tokens.length }))));
    }),
  );
  const rewards = graded.map((rs) => rs.reduce((s, r, k) => s + ctx.graders[k].weight * r.score, 0));
  for (const [i, r] of rewards.entries())
    if (!Number.isFinite(r)) throw new Error(`the graders gave completion ${i} a non-finite reward (${graded[i].map((x) => x.score).join(', ')})`);
  const t2 = performance.now();

  const truncated = generated.map((g) => g.finishReason !== 'stop');
  const loss: GrpoLossOptions = {
    type: config.lossType,
    beta: config.beta,
    epsilon: config.epsilon,
    epsilonHigh: config.epsilonHigh ?? config.epsilon,
    temperature: config.temperature,
    maxCompletionLength: config.maxCompletionTokens,
    maskTruncatedCompletions: config.maskTruncatedCompletions,
  };
  const groups = prompts.map((prompt, p) => ({
    prompt,
    completions: generated.slice(p * G, (p + 1) * G).map((g) => g.tokens),
    rewards: rewards.slice(p * G, (p + 1) * G),
    truncated: truncated.slice(p * G, (p + 1) * G),
  }));
  const r = await ctx.trainer.grpoStep({ groups, loss, scaleRewards: config.scaleRewards, lr: config.lr, microBatchTokens: config.microBatchTokens });
  const t3 = performance.now();

  const lengths = generated.map((g) => g.tokens.length);
  const perGrader: Record<string, { mean: number; std: number }> = {};
  ctx.graders.forEach((w, k) => (perGrader[w.grader.name] = stats(graded.map((rs) => rs[k].score))));
  const finite = (x: number) => (Number.isFinite(x) ? x : NaN);
  const seconds = {
    rollout: (t1 - t0) / 1000,
    grading: (t2 - t1) / 1000,
    reference: r.referenceSeconds,
    policy: r.policySeconds,
    forward: r.forwardSeconds,
    backward: Math.max(0, r.policySeconds - r.forwardSeconds),
    optimizer: r.optimizerSeconds,
    total: (t3 - t0) / 1000,
  };
  const metrics: GrpoStepMetrics = {
    step: r.step,
    lr: config.lr,
    loss: r.loss,
    reward: stats(rewards),
    rewards: perGrader,
    fracRewardZeroStd: r.fracRewardZeroStd,
    completionLength: {
      mean: lengths.reduce((s, x) => s + x, 0) / lengths.length,
      min: Math.min(...lengths),
      max: Math.max(...lengths),
      clippedShare: truncated.filter((t) => t).length / truncated.length,
    },
    clipRatio: { lowMean: r.clipLowMean, highMean: r.clipHighMean, regionMean: r.clipRegionMean, lowMin: finite(r.clipLowMin), highMax: finite(r.clipHighMax) },
    kl: Number.isFinite(r.kl) ? r.kl : null,
    entropy: r.entropy,
    gradNorm: r.gradNorm,
    rolloutTokensPerSecond: lengths.reduce((s, x) => s + x, 0) / Math.max(seconds.rollout, 1e-9),
    trainTokensPerSecond: r.tokens / Math.max(seconds.reference + seconds.policy, 1e-9),
    seconds,
  };
  const rollouts: GrpoRollout[] = generated.map((g, i) => ({
    prompt: items[Math.floor(i / G)].prompt,
    completion: texts[i],
    completionTokens: g.tokens,
    truncated: truncated[i],
    scores: Object.fromEntries(ctx.graders.map((w, k) => [w.grader.name, graded[i][k].score])),
    explanations: Object.fromEntries(ctx.graders.map((w, k) => [w.grader.name, graded[i][k].explanation])),
    reward: rewards[i],
    advantage: r.advantages[Math.floor(i / G)][i % G],
    logprobs: Array.from(r.logprobs[i]),
  }));
  return { metrics, rollouts };
}

// ---------------------------------------------------------------- a run: prompts, steps, checkpoints

/** What defines a GRPO run (with GrpoConfig); a resumed run must be given the same values, but `steps`. */
export interface GrpoRunConfig extends GrpoConfig {
  steps: number;
  rank: number;
  alpha: number;
  targets: string[];
  weightDecay: number;
  maxGradNorm: number;
}

export interface GrpoRunEvents {
  warn(message: string): void;
  /** Before the first step: the step the run starts after (a resumed run's checkpoint) and its last. */
  start?(step: number, totalSteps: number): void;
  step(m: GrpoStepMetrics, rollouts: GrpoRollout[]): void;
  checkpoint(step: number, dir: string): void;
}

export interface GrpoRun {
  model: NativeModel;
  modelPath: string;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  graders: WeightedGrader[];
  /** JSONL, one prompt a line: {"prompt", "reference"?, "system_prompt"?}. */
  dataFile: string;
  dataText: string;
  out: string;
  config: GrpoRunConfig;
  /** Config keys the user gave explicitly (checked against a resumed run's). */
  given: (keyof GrpoRunConfig)[];
  resume: boolean;
  checkpointEvery: number;
  events: GrpoRunEvents;
  /** Asked after every step: pause there, or stop there with a checkpoint. */
  control?: RunController;
}

interface GrpoState {
  format: 1;
  kind: 'grpo';
  step: number;
  /** The epoch of the prompt order, the next prompt in it, and the RNG state its order was drawn from. */
  epoch: number;
  pos: number;
  epochRng: number;
  data: { file: string; sha256: string; prompts: number };
  graders: { name: string; weight: number }[];
  config: GrpoRunConfig;
  model: string;
}

/** The prompts of a JSONL file; unusable lines are reported by number and skipped. */
export function readGrpoPrompts(text: string): { prompts: GrpoPrompt[]; skipped: { line: number; reason: string }[] } {
  const prompts: GrpoPrompt[] = [];
  const skipped: { line: number; reason: string }[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    let row: unknown;
    try {
      row = JSON.parse(raw);
    } catch {
      skipped.push({ line: i + 1, reason: 'not JSON' });
      return;
    }
    const o = row as { prompt?: unknown; reference?: unknown; system_prompt?: unknown };
    if (!row || typeof row !== 'object' || typeof o.prompt !== 'string' || !o.prompt.trim()) {
      skipped.push({ line: i + 1, reason: 'needs a non-empty "prompt" string' });
      return;
    }
    if (o.system_prompt !== undefined && typeof o.system_prompt !== 'string') {
      skipped.push({ line: i + 1, reason: '"system_prompt" must be a string' });
      return;
    }
    prompts.push({ prompt: o.prompt, ...(o.reference !== undefined ? { reference: o.reference } : {}), ...(o.system_prompt ? { systemPrompt: o.system_prompt as string } : {}) });
  });
  return { prompts, skipped };
}

export async function runGrpo(run: GrpoRun): Promise<{ steps: number; adapter: string; stoppedAt?: string; resumedFrom?: string; first?: GrpoStepMetrics; last?: GrpoStepMetrics }> {
  const { createHash } = await import('node:crypto');
  const { readFileSync, renameSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { latestCheckpoint, writeCheckpoint } = await import('./sft-run.ts');
  const { out, events } = run;
  let config = run.config;
  const sha256 = createHash('sha256').update(run.dataText).digest('hex');
  const graders = run.graders.map((g) => ({ name: g.grader.name, weight: g.weight }));
  let state: GrpoState | undefined;
  let resumedFrom: string | undefined;
  if (run.resume) {
    resumedFrom = latestCheckpoint(out);
    if (!resumedFrom) throw new Error(`--resume: no checkpoint in ${join(out, 'checkpoints')}`);
    state = JSON.parse(readFileSync(join(resumedFrom, 'trainer_state.json'), 'utf8')) as GrpoState;
    if (state.kind !== 'grpo') throw new Error(`--resume: ${resumedFrom} is not a GRPO checkpoint`);
    const differ = (Object.keys(config) as (keyof GrpoRunConfig)[]).filter((k) => k !== 'steps' && run.given.includes(k) && JSON.stringify(config[k]) !== JSON.stringify(state!.config[k]));
    if (differ.length) throw new Error(`--resume: ${differ.map((k) => `${k} ${JSON.stringify(config[k])} differs from the run's ${JSON.stringify(state!.config[k])}`).join('; ')} (${resumedFrom})`);
    if (JSON.stringify(state.graders) !== JSON.stringify(graders)) throw new Error(`--resume: the graders ${JSON.stringify(graders)} are not the run's ${JSON.stringify(state.graders)}`);
    if (state.data.sha256 !== sha256) throw new Error(`--resume: ${run.dataFile} is not the data the run in ${out} was trained on (its content changed)`);
    config = { ...state.config, steps: config.steps };
  }
  validate(config);
  const { prompts, skipped } = readGrpoPrompts(run.dataText);
  if (skipped.length)
    events.warn(`skipped ${skipped.length} of ${skipped.length + prompts.length} lines of ${run.dataFile}: ` + skipped.slice(0, 3).map((s) => `line ${s.line}: ${s.reason}`).join('; ') + (skipped.length > 3 ? '; …' : ''));
  if (!prompts.length) throw new Error(`${run.dataFile}: no usable prompts`);

  const trainer = await run.model.createTrainer(
    resumedFrom
      ? { resume: resumedFrom, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm }
      : { init: { rank: config.rank, alpha: config.alpha, targetModules: config.targets, seed: config.seed, baseModel: run.modelPath }, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm },
  );
  if (state && trainer.initialStep !== state.step) throw new Error(`${resumedFrom}: the optimizer has ${trainer.initialStep} steps, trainer_state.json says ${state.step}`);
  const ctx: GrpoContext = { model: run.model, trainer, tokenizer: run.tokenizer, template: run.template, graders: run.graders };

  let step = state?.step ?? 0;
  let epoch = state?.epoch ?? 0;
  let pos = state?.pos ?? 0;
  let epochRng = state?.epochRng ?? Rng.fromSeed(config.seed).state;
  const snapshot = (): GrpoState => ({ format: 1, kind: 'grpo', step, epoch, pos, epochRng, data: { file: run.dataFile, sha256, prompts: prompts.length }, graders, config, model: run.modelPath });
  // The prompt order: a shuffle per epoch, drawn from the RNG state saved with the checkpoint.
  const drawPlan = () => {
    const rng = new Rng(epochRng);
    const order = rng.shuffle(prompts.map((_, i) => i));
    return { order, next: rng.state };
  };
  let plan = drawPlan();
  events.start?.(step, config.steps);
  let first: GrpoStepMetrics | undefined;
  let last: GrpoStepMetrics | undefined;
  let lastCheckpoint = resumedFrom;
  while (step < config.steps) {
    const batch: GrpoPrompt[] = [];
    while (batch.length < config.promptsPerStep) {
      if (pos >= plan.order.length) {
        epoch++;
        pos = 0;
        epochRng = plan.next;
        plan = drawPlan();
      }
      batch.push(prompts[plan.order[pos++]]);
    }
    let r;
    try {
      r = await grpoStep(ctx, config, batch, step);
    } catch (e) {
      throw new Error(`${(e as Error).message}. ` + (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint} (continue from it with --resume).` : 'No checkpoint was written yet.'));
    }
    step++;
    first ??= r.metrics;
    last = r.metrics;
    events.step(r.metrics, r.rollouts);
    if (run.checkpointEvery > 0 && step % run.checkpointEvery === 0 && step < config.steps) {
      lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
      events.checkpoint(step, lastCheckpoint);
    }
    if (run.control && step < config.steps) {
      // A pause or a stop keeps the step just taken: the app may close, or the user resume later.
      if (run.control.holding && lastCheckpoint !== join(out, 'checkpoints', `step-${String(step).padStart(6, '0')}`)) {
        lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
        events.checkpoint(step, lastCheckpoint);
      }
      if (await run.control.between()) return { steps: step, adapter: out, stoppedAt: lastCheckpoint, resumedFrom, first, last };
    }
  }
  lastCheckpoint = await writeCheckpoint(out, trainer, snapshot());
  events.checkpoint(step, lastCheckpoint);
  for (const f of ['adapter_model.safetensors', 'adapter_config.json']) {
    writeFileSync(join(out, `.${f}.tmp`), readFileSync(join(lastCheckpoint, f)));
    renameSync(join(out, `.${f}.tmp`), join(out, f));
  }
  return { steps: step, adapter: out, resumedFrom, first, last };
}
