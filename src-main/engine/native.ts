// Typed access to the native engine addon (native/build/Release/aha.node).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LoadOptions {
  threads?: number;
  /** Max tokens per sequence; default min(model's context, 4096). */
  context?: number;
  /** Total KV cache capacity across sequences; default 2 × context. */
  cacheTokens?: number;
  /** K/V cache elements; default f16 (dense) or bf16 (DeepSeek's MLA latent cache). */
  kvType?: 'f16' | 'bf16' | 'f32';
  /** DeepSeek's MLA: 'absorbed' (attention in the latent space), 'expanded' (K/V rebuilt from the latents), or 'auto' (expanded for prefill, absorbed for decode; the default). */
  mlaAttention?: 'auto' | 'absorbed' | 'expanded';
  /** MoE: routed experts per token; default the model's num_experts_per_tok. */
  expertsPerToken?: number;
  /** FP8 checkpoints (DeepSeek-V3's block-scaled e4m3): 'fp8' uses the weights as stored (the default); the others convert them once at load. */
  fp8As?: 'fp8' | 'bf16' | 'q8_0' | 'q4_K';
}

export interface LoadProgress {
  fraction: number;
  stage: string;
}

export interface ModelInfo {
  path: string;
  format: 'gguf' | 'safetensors';
  architecture: string;
  name: string;
  parameters: number;
  dtypeMix: Record<string, number>;
  weightBytes: number;
  /** Weight bytes one decode step reads (all but the embedding table, unless it is tied). */
  decodeBytes: number;
  contextLength: number;
  context: number;
  kvBytes: number;
  /** The K/V (or MLA latent) cache's elements. */
  kvType: 'f16' | 'bf16' | 'f32';
  vocabSize: number;
  threads: number;
  config: {
    hiddenSize: number;
    intermediateSize: number;
    layers: number;
    heads: number;
    kvHeads: number;
    headDim: number;
    ropeTheta: number;
    tiedEmbeddings: boolean;
    bosTokenId: number;
    eosTokenIds: number[];
    /** The deepseek family's MLA and MoE shape (absent for the dense family). */
    deepseek?: {
      qLoraRank: number;
      kvLoraRank: number;
      qkNopeHeadDim: number;
      qkRopeHeadDim: number;
      vHeadDim: number;
      routedExperts: number;
      sharedExperts: number;
      expertsPerToken: number;
      moeIntermediateSize: number;
      denseLayers: number;
    };
  };
}

export interface SamplerOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  penaltyLastN?: number;
  seed?: number;
  logitBias?: Record<number, number>;
}

export interface GenerateRequest extends SamplerOptions {
  prompt: number[] | Int32Array;
  /** A loaded LoRA adapter's id (loadAdapter); 0 or absent: the base model. */
  adapter?: number;
  /** DeepSeek-V3's MTP module drafts a token ahead for the main model to check (greedy, one request, no adapter): the same tokens, fewer forwards. */
  mtp?: boolean;
  maxTokens?: number;
  stopTokens?: number[];
  ignoreEos?: boolean;
}

export type FinishReason = 'length' | 'stop' | 'cancelled' | 'context';

export interface GenerateResult {
  tokens: number[];
  finishReason: FinishReason;
  promptTokens: number;
  cachedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  /** MTP drafting (request.mtp): drafts made, and drafts the main model kept. */
  drafted?: number;
  accepted?: number;
}

export interface LoraGradOptions {
  /** A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors). */
  adapter: string;
  /** Hugging Face convention: labels[t] = inputIds[t] where the loss applies, -100 elsewhere. */
  sequences: { inputIds: number[]; labels: number[] }[];
  /** Where the gradients go (safetensors, PEFT names; loss and target_tokens in the metadata). */
  out: string;
  /** Compute precision and file dtype; default f32. */
  dtype?: 'f32' | 'f64';
}

/** GRPO's loss options, as TRL's GRPOConfig names them (DESIGN.md §4); every one optional. */
export interface GrpoLossOptions {
  /** Default 'dapo'. */
  type?: 'grpo' | 'bnpo' | 'dr_grpo' | 'dapo';
  /** Weight of the k3 KL to the reference (the model with the adapter off); default 0 (no reference pass). */
  beta?: number;
  /** Clip range [1 − epsilon, 1 + epsilonHigh]; defaults 0.2 and epsilon. */
  epsilon?: number;
  epsilonHigh?: number;
  /** Log-probs from logits / temperature (the sampling temperature); default 1. */
  temperature?: number;
  /** dr_grpo's normalizer (required there); when set, no completion may be longer. */
  maxCompletionLength?: number;
  /** Truncated completions get no loss (they still count as sequences). */
  maskTruncatedCompletions?: boolean;
}

/** TRL's metrics of one GRPO loss over its loss tokens (NaN where undefined: kl with beta 0). */
export interface GrpoLossResult {
  loss: number;
  /** Completion tokens in the loss (TRL's num_items_in_batch). */
  lossTokens: number;
  /** Prompt + completion tokens run through the model. */
  tokens: number;
  sequences: number;
  maskedSequences: number;
  kl: number;
  entropy: number;
  clipLowMean: number;
  clipHighMean: number;
  clipRegionMean: number;
  clipLowMin: number;
  clipHighMax: number;
  /** The adapter-off pass (beta > 0) and the forward + backward with the adapter. */
  referenceSeconds: number;
  policySeconds: number;
  /** Of policySeconds, the train-mode forward alone (the rest: the lm head's log-probs and the backward). */
  forwardSeconds: number;
  /** [prompts][G] */
  advantages: number[][];
  fracRewardZeroStd: number;
}

export interface GrpoGroup {
  prompt: number[];
  completions: number[][];
  rewards: number[];
  /** Per completion: stopped by the length limit rather than an end-of-sequence token. */
  truncated?: boolean[];
}

export interface GrpoStepResult extends GrpoLossResult {
  /** Before clipping. */
  gradNorm: number;
  /** Optimizer steps taken, this one included. */
  step: number;
  optimizerSeconds: number;
  /** The policy's log-prob of every completion token, group by group (empty for masked completions). */
  logprobs: Float64Array[];
}

/** A LoRA adapter the model holds, applied unmerged by the requests that name its id. */
export interface AdapterInfo {
  id: number;
  name: string;
  /** The folder it was loaded from ('' when made in memory, e.g. by a trainer). */
  path: string;
  rank: number;
  alpha: number;
  scale: number;
  useRslora: boolean;
  targetModules: string[];
  /** Bumped whenever its weights change (a training step). */
  version: number;
}

export interface NativeModel {
  info(): ModelInfo;
  /** Logits of the last position, or of every position with all=true; with a loaded adapter's id, through it. */
  logits(tokens: number[] | Int32Array, all?: boolean, adapter?: number): Promise<Float32Array[]>;
  /** Decodes the requests together; onToken(requestIndex, token) streams every token. */
  generate(requests: GenerateRequest[], onToken?: (request: number, token: number) => void): Promise<GenerateResult[]>;
  cancel(): void;
  /**
   * pp: one prefill of `pp` random tokens; tg: `tg` decode steps from an empty context; depths:
   * `depthTg` decode steps after the context is filled to each depth with random cache entries
   * (no prefill; depthFill 'prefill' runs a real one of random tokens instead), with the cache
   * bytes the sequence holds and the activation buffers decoding there needs. Best of `repeats`
   * (pp and tg also give the mean).
   */
  benchmark(opts: { pp: number; tg: number; repeats?: number; depths?: number[]; depthTg?: number; depthFill?: 'random' | 'prefill' }): Promise<{
    /** tps: the best of the repeats; tpsMean: their mean. */
    pp: { tokens: number; tps: number; tpsMean: number };
    tg: { tokens: number; tps: number; tpsMean: number };
    depths: Array<{ depth: number; tokens: number; tps: number; cacheBytes: number; workspaceBytes: number }>;
  }>;
  unload(): Promise<void>;
  /** One forward and backward with a LoRA adapter (no optimizer step): the mean cross-entropy over the target tokens. */
  loraGrad(opts: LoraGradOptions): Promise<{ loss: number; targetTokens: number }>;
  /** Loads a PEFT LoRA adapter folder; several may be loaded, each request chooses one or none. */
  loadAdapter(dir: string, name?: string): Promise<AdapterInfo>;
  /** Fails while a sequence computed with it is alive. */
  removeAdapter(id: number): Promise<void>;
  adapters(): Promise<AdapterInfo[]>;
  /** log p of every completion token given its prompt (and the completion before it), batched; adapter 0/absent: the base model. */
  scoreLogprobs(opts: { adapter?: number; sequences: { prompt: number[]; completion: number[] }[] }): Promise<Float64Array[]>;
  /** A LoRA trainer on this model: a fresh PEFT-initialized adapter, or a checkpoint folder to resume. */
  createTrainer(opts: TrainerOptions): Promise<NativeTrainer>;
  /** The GRPO loss of a ROLLOUTS.json file (aha/grpo.h) with a PEFT adapter folder, its LoRA gradients written to `out` (no optimizer step). */
  grpoGrad(opts: { adapter: string; rollouts: string; out: string; dtype?: 'f32' | 'f64'; microBatchTokens?: number }): Promise<GrpoLossResult>;
}

export interface TrainerOptions {
  /** dropout: PEFT's lora_dropout, applied to the adapter branch's input in training steps. */
  init?: { rank: number; alpha: number; targetModules?: string[]; useRslora?: boolean; dropout?: number; seed?: number; baseModel?: string };
  /** A folder NativeTrainer.save wrote. */
  resume?: string;
  /** The model's adapter name for the adapter being trained (default 'training'). */
  name?: string;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global-norm clipping; 0: off. Default 1. */
  maxGradNorm?: number;
  /** Activation checkpointing: each layer's activations recomputed in the backward (same numbers, less memory). */
  checkpointLayers?: boolean;
}

export interface TrainStepResult {
  /** Mean cross-entropy over the target tokens of all micro-batches. */
  loss: number;
  targetTokens: number;
  tokens: number;
  /** Before clipping. */
  gradNorm: number;
  /** Optimizer steps taken, this one included. */
  step: number;
}

export interface NativeTrainer {
  /** The model's adapter id of the adapter being trained (it follows every step). */
  readonly adapterId: number;
  /** Optimizer steps taken when it was created (a resumed trainer's count). */
  readonly initialStep: number;
  /** Forward + backward of each micro-batch (accumulated as one batch), clipping, one AdamW step at lr; rejects on a NaN/Inf loss or gradient, changing nothing. */
  step(opts: { microBatches: { inputIds: number[]; labels: number[] }[][]; lr: number }): Promise<TrainStepResult>;
  /**
   * One GRPO step: advantages from each group's rewards (scaleRewards, default 'group'), the loss
   * and its gradients (packed in micro-batches of at most microBatchTokens tokens; 0: one),
   * clipping, one AdamW step at lr; rejects on a NaN/Inf loss or gradient, changing nothing.
   */
  grpoStep(opts: { groups: GrpoGroup[]; loss?: GrpoLossOptions; scaleRewards?: 'group' | 'batch' | 'none'; lr: number; microBatchTokens?: number }): Promise<GrpoStepResult>;
  /** Adapter (PEFT layout) + optimizer state into an existing folder. */
  save(dir: string): Promise<void>;
}

/** Full training: every parameter of a small dense model (Llama, Qwen2, Qwen3), f32 master weights. One of model, config, resume. */
export interface FullTrainerOptions {
  /** Start from this model (GGUF file or HF folder, any dtype; dequantized to f32). */
  model?: string;
  /** A fresh model from this HF config.json: the embedding and matrices N(0, initializer_range²), norms 1, biases 0. */
  config?: string;
  /** Seeds the fresh model (config). */
  seed?: number;
  /** A folder NativeFullTrainer.save wrote. */
  resume?: string;
  /** Default: physical cores. */
  threads?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  /** AdamW weight decay, never on norms and biases. */
  weightDecay?: number;
  /** Global-norm clipping; 0: off. Default 1. */
  maxGradNorm?: number;
}

export interface NativeFullTrainer {
  /** Optimizer steps taken when it was created (a resumed trainer's count). */
  readonly initialStep: number;
  readonly parameters: number;
  readonly vocabSize: number;
  readonly architecture: string;
  /** As NativeTrainer.step, over every parameter. */
  step(opts: { microBatches: { inputIds: number[]; labels: number[] }[][]; lr: number }): Promise<TrainStepResult>;
  /** config.json + model.safetensors (an HF folder the engine and transformers load) and the optimizer state, into an existing folder. */
  save(dir: string): Promise<void>;
}

export interface NativeAddon {
  loadModel(path: string, options?: LoadOptions, onProgress?: (p: LoadProgress) => void): Promise<NativeModel>;
  quantizeRows(type: string, data: Float32Array, rowLength: number): Uint8Array;
  dequantizeRows(type: string, data: Uint8Array, rowLength: number): Float32Array;
  measureBandwidth(threads?: number): Promise<number>;
  cpuInfo(): { isa: string; bestIsa: string; physicalCores: number };
  createFullTrainer(opts: FullTrainerOptions): Promise<NativeFullTrainer>;
  /** The learning rate of optimizer step `step` (0-based) under transformers' warmup schedules. */
  lrAt(schedule: 'constant' | 'linear' | 'cosine', lr: number, step: number, warmupSteps: number, totalSteps: number): number;
}

const here = dirname(fileURLToPath(import.meta.url));

function addonPath(): string {
  const candidates = [
    process.env.AHA_ADDON,
    resolve(here, '../../native/build/Release/aha.node'),
    // Packaged app: the addon is unpacked next to the asar.
    join(here.replace('app.asar', 'app.asar.unpacked'), '../../native/build/Release/aha.node'),
  ].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`the native engine is not built (looked in ${candidates.join(', ')}); run \`npm install\` or \`npm run build:native\``);
  return found;
}

let cached: NativeAddon | undefined;

export function native(): NativeAddon {
  if (!cached) cached = createRequire(import.meta.url)(addonPath()) as NativeAddon;
  return cached;
}

export function quantizeRows(type: string, data: Float32Array, rowLength: number): Uint8Array {
  return native().quantizeRows(type, data, rowLength);
}
