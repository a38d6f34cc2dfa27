// The `aha` command: generate, logits, bench, grad, info. Every subcommand has --help, --json where it
// prints results, and errors that say what to fix (exit code 2 for usage, 1 for failures).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { native, type LoadOptions, type LoadProgress, type NativeModel } from '../engine/native.ts';
import { formatMegabytes, type ProgressFields } from './progress.ts';

class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

const common: Options = {
  model: { type: 'string', short: 'm' },
  threads: { type: 'string', short: 't' },
  ctx: { type: 'string' },
  kv: { type: 'string' },
  mla: { type: 'string' },
  experts: { type: 'string' },
  'fp8-as': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

const commands: Record<string, { summary: string; usage: string; options: Options; run: (v: Values) => Promise<void> }> = {
  generate: {
    summary: 'generate text from a prompt or a chat message',
    usage: `aha generate [--model PATH] (--prompt TEXT | --chat TEXT) [options]
  --model PATH         a .gguf file or a Hugging Face model folder (default: the built-in tiny model,
                       resources/default-model, which thinks aloud and adds numbers)
  --prompt TEXT        raw prompt (no template)
  --chat TEXT          a user message, rendered with the model's chat template
  --system TEXT        system message for --chat
  --max-tokens N       default 256
  --temperature T      default 0.6 (R1's recommendation); 0 = greedy
  --top-p P            default 0.95
  --top-k K            default 0 (off)
  --min-p P            default 0
  --repeat-penalty R   default 1 (off)
  --seed S             default 0
  --stop TEXT          stop string (repeatable)
  --threads N          default: physical cores
  --ctx N              context per sequence
  --kv f16|bf16|f32    KV cache dtype (default f16; bf16 for DeepSeek's MLA latent cache)
  --mla auto|absorbed|expanded   DeepSeek's MLA attention form (default auto: expanded prefill, absorbed decode)
  --experts N          DeepSeek MoE: routed experts per token (default: the model's)
  --fp8-as bf16|q8_0|q4_K   an FP8 checkpoint's weights converted at load (default: used as stored)
  --adapter DIR        a PEFT LoRA adapter folder, applied without merging
  --mtp                DeepSeek-V3: its multi-token-prediction module drafts a token ahead for the model
                       to check (greedy: temperature 0); reports how many drafts were kept
  --json               print one JSON object instead of streaming text`,
    options: {
      prompt: { type: 'string', short: 'p' },
      chat: { type: 'string' },
      system: { type: 'string' },
      'max-tokens': { type: 'string', short: 'n' },
      temperature: { type: 'string' },
      'top-p': { type: 'string' },
      'top-k': { type: 'string' },
      'min-p': { type: 'string' },
      'repeat-penalty': { type: 'string' },
      seed: { type: 'string' },
      stop: { type: 'string', multiple: true },
      adapter: { type: 'string' },
      mtp: { type: 'boolean' },
    },
    run: generate,
  },
  logits: {
    summary: 'print the logits of the last (or every) position as JSON',
    usage: `aha logits --model PATH --tokens 1,2,3 [--all] [--kv f32] [--mla auto|absorbed|expanded] [--experts N] [--adapter DIR]
  --tokens IDS   comma-separated token ids
  --all          logits of every position, not just the last
  --adapter DIR  a PEFT LoRA adapter folder, applied without merging`,
    options: { tokens: { type: 'string' }, all: { type: 'boolean' }, adapter: { type: 'string' } },
    run: logits,
  },
  bench: {
    summary: 'measure prompt processing and generation speed against the memory bound',
    usage: `aha bench --model PATH [--pp 512] [--tg 128] [--depth D1,D2,..] [--depth-tg N] [--threads N] [--repeats R] [--kv T] [--mla auto|absorbed|expanded] [--experts N] [--fp8-as T] [--json]
  --depth D1,D2,..     also decode --depth-tg tokens (default --tg) at these context depths, the context
                       filled with random cache entries rather than a prefill (decode speed at depth
                       depends on the depth, not on the values); reports each depth's cache and
                       activation memory
  --depth-fill random|prefill   how the context gets there (prefill: random tokens through the
                       model, as llama-bench -d; slow for deep contexts of big models)`,
    options: {
      pp: { type: 'string' }, tg: { type: 'string' }, repeats: { type: 'string' }, depth: { type: 'string' }, 'depth-tg': { type: 'string' },
      'depth-fill': { type: 'string' },
    },
    run: bench,
  },
  serve: {
    summary: 'serve the app in a browser, its WebSocket API and an OpenAI-compatible API',
    usage: `aha serve [--port N] [--host 127.0.0.1] [--api-key KEY] [--data-dir DIR] [--model PATH]
  --port N         default 8484 (0: any free port)
  --host H         default 127.0.0.1 (loopback); 0.0.0.0 serves the network — set --api-key then
  --api-key KEY    require this key (Authorization: Bearer KEY; the page takes ?key=KEY); also $AHA_API_KEY
  --data-dir DIR   where the database lives (default: the desktop app's folder; also $AHA_DATA_DIR)
  --model PATH     add this GGUF file or HF folder to the library and load it at start`,
    options: { port: { type: 'string' }, host: { type: 'string' }, 'api-key': { type: 'string' }, 'data-dir': { type: 'string' } },
    run: serveCommand,
  },
  models: {
    summary: 'list the model library, with LM Studio and Ollama models discovered',
    usage: `aha models [--data-dir DIR] [--json]`,
    options: { 'data-dir': { type: 'string' } },
    run: modelsCommand,
  },
  grad: {
    summary: 'one forward and backward with a LoRA adapter: the loss and every LoRA gradient, no training step',
    usage: `aha grad --model PATH --adapter DIR (--sft FILE | --grpo ROLLOUTS.json) --out GRADS.safetensors [--dtype f32|f64] [--json]
  --adapter DIR    a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)
  --sft FILE       JSONL, one example a line: {"input_ids", "labels"} (-100: no loss),
                   {"prompt", "completion"} or {"messages"} (through the chat template; loss on the answer);
                   all lines form one batch, the loss is the mean over its target tokens
  --grpo FILE      the GRPO loss (TRL's GRPOTrainer) of rollouts, as one generation batch:
                   {"prompts": [[ids]], "completions": [[[ids] × G] per prompt], "rewards": [[G numbers] per prompt],
                    "old_logprobs"?: [[[per token] × G]], "truncated"?: [[G booleans]] (default: no eos at the end),
                    "loss"?: {"type": "dapo"|"grpo"|"bnpo"|"dr_grpo", "beta": 0, "epsilon": 0.2, "epsilon_high": 0.2,
                              "scale_rewards": "group"|"batch"|"none", "temperature": 1, "max_completion_length": N,
                              "mask_truncated_completions": false}}
  --out FILE       the gradients under their PEFT names (safetensors; loss and target_tokens in the metadata)
  --dtype f32|f64  compute precision and file dtype (default f32)`,
    options: { adapter: { type: 'string' }, sft: { type: 'string' }, grpo: { type: 'string' }, out: { type: 'string' }, dtype: { type: 'string' } },
    run: grad,
  },
  'train sft': {
    summary: 'fine-tune a LoRA adapter (or, with --full, every parameter of a small model) on chat or prompt/completion examples (SFT)',
    usage: `aha train sft --model PATH --dataset FILE|ID --out DIR [options]
       aha train sft --full (--model PATH | --config CONFIG.json --tokenizer DIR) --dataset FILE|ID --out DIR [options]
  --dataset FILE|ID      JSONL: {"messages": [...]} (loss on every assistant turn), {"prompt", "completion"},
                         or {"input_ids", "labels"}; unusable rows are skipped and counted. Or the id or name
                         of a dataset of the app's database: its items' worked solutions (not its eval split).
                         --data FILE is the same
  --out DIR              the adapter (PEFT layout), or with --full the model, and checkpoints/step-N/ go here
  --data-dir DIR         the app's database, where the run and its metrics are recorded (default: the
                         desktop app's folder; also $AHA_DATA_DIR)
  --full                 train every parameter of a small dense model (Llama, Qwen2, Qwen3): embeddings, every
                         projection, norms, lm head, in f32; OUT becomes a model folder (config.json,
                         model.safetensors, the tokenizer's files) that aha and transformers load
  --config FILE          with --full, instead of --model: a fresh model from an HF config.json (embedding and
                         matrices N(0, initializer_range²), norms 1, biases 0; seeded by --seed)
  --tokenizer DIR        the tokenizer's folder (tokenizer.json, tokenizer_config.json): required with --config,
                         else the model's own
  --rank N               LoRA rank (default 8)
  --alpha A              LoRA alpha (default 16)
  --rslora               scale alpha/sqrt(rank) instead of alpha/rank
  --dropout P            LoRA dropout on the adapter's input, 0 ≤ P < 1 (default 0)
  --targets LIST         comma-separated modules, PEFT's names (default all-linear: q/k/v/o/gate/up/down_proj of a
                         dense model; q_proj or q_a_proj/q_b_proj, kv_a_proj_with_mqa, kv_b_proj, o_proj and the
                         dense layers' and shared experts' gate/up/down_proj of a DeepSeek); its routed experts
                         only when named: experts.gate_up_proj,experts.down_proj
  --lr LR                peak learning rate (default 2e-4)
  --schedule S           cosine | linear | constant (default cosine)
  --warmup N             warmup steps (default 0)
  --weight-decay W       AdamW weight decay (default 0)
  --max-grad-norm G      global-norm clipping, 0 = off (default 1)
  --epochs N             default 1
  --batch N              sequences per micro-batch (default 4)
  --grad-accum N         micro-batches per optimizer step (default 1)
  --max-len N            longer examples are truncated (default 1024)
  --checkpoint-layers    activation checkpointing: recompute each layer in the backward (the same
                         numbers, a fraction of the activation memory; LoRA only)
  --checkpoint-every N   checkpoint every N steps (default 0: only at the end)
  --resume               continue the run in --out from its newest checkpoint (and its record)
  --seed S               adapter (or --config model) initialization and data order (default 0)
  --threads N            default: physical cores
  --json                 one JSON line per step (step, loss, lr, grad_norm, tokens_per_s) instead of a progress bar
Ctrl-C (or SIGTERM) ends the run after the step under way, with a checkpoint to --resume from.`,
    options: {
      dataset: { type: 'string' },
      data: { type: 'string' },
      'data-dir': { type: 'string' },
      out: { type: 'string' },
      rank: { type: 'string' },
      alpha: { type: 'string' },
      rslora: { type: 'boolean' },
      dropout: { type: 'string' },
      targets: { type: 'string' },
      lr: { type: 'string' },
      schedule: { type: 'string' },
      warmup: { type: 'string' },
      'weight-decay': { type: 'string' },
      'max-grad-norm': { type: 'string' },
      epochs: { type: 'string' },
      batch: { type: 'string' },
      'grad-accum': { type: 'string' },
      'max-len': { type: 'string' },
      'checkpoint-layers': { type: 'boolean' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean' },
      seed: { type: 'string' },
      full: { type: 'boolean' },
      config: { type: 'string' },
      tokenizer: { type: 'string' },
    },
    run: trainSft,
  },
  'train grpo': {
    summary: 'train a LoRA adapter with GRPO: G completions per prompt, rule graders, TRL\'s loss',
    usage: `aha train grpo --model PATH --dataset FILE|ID --grader LIST --out DIR [options]
  --dataset FILE|ID       JSONL, one prompt a line: {"prompt", "reference"?, "system_prompt"?}; or the id or
                          name of a dataset of the app's database (not its eval split). --data FILE is the same
  --grader LIST           graders and weights, e.g. math,format:0.5 (math, exact, multiple-choice, format,
                          repetition, countdown, code); reward = Σ weight · score
  --grader-config FILE    more graders, configured: JSON [{"weight": 1, "grader": {"name", "version", "kind", "options"}}]
  --out DIR               the adapter (PEFT layout) and checkpoints/step-N/ go here
  --data-dir DIR          the app's database, where the run, its metrics and sampled rollouts are recorded
                          (default: the desktop app's folder; also $AHA_DATA_DIR)
  --sample-groups N       groups of G rollouts recorded per step (default 1; 0: none)
  --steps N               optimizer steps (default 100)
  --num-generations G     completions per prompt (default 8)
  --prompts-per-step N    default 4
  --max-tokens N          completion length limit (default 256)
  --temperature T         sampling temperature, also the loss's (default 1)
  --lr LR                 constant learning rate (default 5e-6)
  --loss-type T           dapo | grpo | bnpo | dr_grpo (default dapo)
  --beta B                KL weight to the model without the adapter (default 0)
  --epsilon E             clip range low (default 0.2); --epsilon-high E (default: epsilon)
  --scale-rewards S       group | batch | none (default group)
  --mask-truncated        truncated completions get no loss
  --rank N, --alpha A     LoRA rank and alpha (default 8, 16); --targets LIST as for train sft
  --micro-batch-tokens N  pack the train step in chunks of N tokens (memory; default 0: at once)
  --checkpoint-every N    checkpoint every N steps (default 0: only at the end)
  --resume                continue the run in --out from its newest checkpoint (and its record)
  --seed S                adapter initialization, prompt order and sampling (default 0)
  --json                  one JSON line per step (the step's metrics) instead of a progress bar
Ctrl-C (or SIGTERM) ends the run after the step under way, with a checkpoint to --resume from.`,
    options: {
      dataset: { type: 'string' },
      data: { type: 'string' },
      'data-dir': { type: 'string' },
      'sample-groups': { type: 'string' },
      grader: { type: 'string' },
      'grader-config': { type: 'string' },
      out: { type: 'string' },
      steps: { type: 'string' },
      'num-generations': { type: 'string' },
      'prompts-per-step': { type: 'string' },
      'max-tokens': { type: 'string' },
      temperature: { type: 'string' },
      lr: { type: 'string' },
      'loss-type': { type: 'string' },
      beta: { type: 'string' },
      epsilon: { type: 'string' },
      'epsilon-high': { type: 'string' },
      'scale-rewards': { type: 'string' },
      'mask-truncated': { type: 'boolean' },
      rank: { type: 'string' },
      alpha: { type: 'string' },
      targets: { type: 'string' },
      'micro-batch-tokens': { type: 'string' },
      'checkpoint-every': { type: 'string' },
      resume: { type: 'boolean' },
      seed: { type: 'string' },
    },
    run: trainGrpo,
  },
  info: {
    summary: 'describe a model: architecture, parameters, dtypes, context, memory',
    usage: `aha info --model PATH [--json]`,
    options: {},
    run: info,
  },
};

type Values = Record<string, string | boolean | string[] | undefined>;

function int(v: Values, key: string, fallback: number, min = 0): number {
  const s = v[key];
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${key} must be an integer ≥ ${min}, got '${s}'`);
  return n;
}

function float(v: Values, key: string, fallback: number): number {
  const s = v[key];
  if (s === undefined) return fallback;
  const n = Number(s);
  if (!Number.isFinite(n)) throw new UsageError(`--${key} must be a number, got '${s}'`);
  return n;
}

function loadOptions(v: Values): LoadOptions {
  const kv = v.kv as string | undefined;
  if (kv !== undefined && kv !== 'f16' && kv !== 'bf16' && kv !== 'f32') throw new UsageError(`--kv must be f16, bf16 or f32, got '${kv}'`);
  const mla = v.mla as string | undefined;
  if (mla !== undefined && mla !== 'auto' && mla !== 'absorbed' && mla !== 'expanded')
    throw new UsageError(`--mla must be auto, absorbed or expanded, got '${mla}'`);
  const fp8 = v['fp8-as'] as string | undefined;
  if (fp8 !== undefined && !['fp8', 'bf16', 'q8_0', 'q4_K'].includes(fp8)) throw new UsageError(`--fp8-as must be bf16, q8_0 or q4_K, got '${fp8}'`);
  return {
    threads: int(v, 'threads', 0, 1),
    context: int(v, 'ctx', 0, 1),
    kvType: kv as LoadOptions['kvType'],
    mlaAttention: mla as LoadOptions['mlaAttention'],
    expertsPerToken: int(v, 'experts', 0, 1),
    fp8As: fp8 as LoadOptions['fp8As'],
  };
}

function modelPath(v: Values): string {
  if (typeof v.model !== 'string') throw new UsageError('--model PATH is required (a .gguf file or a Hugging Face model folder)');
  return v.model;
}

function progressBar(json: boolean): ((p: LoadProgress) => void) | undefined {
  if (json || !process.stderr.isTTY) return undefined;
  return (p) => {
    const w = 30;
    const done = Math.round(p.fraction * w);
    process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(w - done)}] ${Math.round(p.fraction * 100)}% ${p.stage}   `);
    if (p.fraction >= 1) process.stderr.write('\r' + ' '.repeat(w + 30) + '\r');
  };
}

async function generate(v: Values): Promise<void> {
  const { defaultModelPath } = await import('../services/models/default-model.ts');
  const path = typeof v.model === 'string' ? v.model : (defaultModelPath() ?? modelPath(v));
  if ((v.prompt === undefined) === (v.chat === undefined)) throw new UsageError('give exactly one of --prompt TEXT or --chat TEXT');
  const json = !!v.json;
  // Loaded on demand: the tokenizer stack is only needed for text.
  const { openModel } = await import('../engine/open.ts');
  const { generateText } = await import('../engine/stream.ts');
  const m = await openModel(path, loadOptions(v), progressBar(json));
  try {
    const adapter = typeof v.adapter === 'string' ? (await m.model.loadAdapter(v.adapter)).id : 0;
    let text: string;
    if (typeof v.chat === 'string') {
      if (m.templateError) process.stderr.write(`warning: ${m.templateError}; using the ${m.template.name} template\n`);
      const messages = [
        ...(typeof v.system === 'string' ? [{ role: 'system' as const, content: v.system }] : []),
        { role: 'user' as const, content: v.chat },
      ];
      text = m.template.render(messages, { bosToken: m.tokenizer.bosToken, eosToken: m.tokenizer.eosToken });
    } else {
      text = v.prompt as string;
    }
    const prompt = m.tokenizer.encode(text, { addSpecialTokens: typeof v.chat !== 'string' });
    const res = await generateText(
      m.model,
      m.tokenizer,
      {
        prompt,
        maxTokens: int(v, 'max-tokens', 256),
        temperature: float(v, 'temperature', v.mtp ? 0 : 0.6),
        topP: float(v, 'top-p', 0.95),
        topK: int(v, 'top-k', 0),
        minP: float(v, 'min-p', 0),
        repetitionPenalty: float(v, 'repeat-penalty', 1),
        seed: int(v, 'seed', 0),
        stop: (v.stop as string[] | undefined) ?? [],
        adapter,
        mtp: !!v.mtp,
      },
      json ? undefined : (d) => process.stdout.write(d),
    );
    const tps = res.tokens.length / Math.max(res.decodeSeconds, 1e-9);
    if (json) {
      process.stdout.write(
        JSON.stringify({
          text: res.text,
          tokens: res.tokens,
          finish_reason: res.finishReason,
          prompt_tokens: res.promptTokens,
          prefill_seconds: res.prefillSeconds,
          decode_seconds: res.decodeSeconds,
          tokens_per_second: tps,
          ...(v.mtp ? { mtp: { drafted: res.drafted, accepted: res.accepted, acceptance_rate: (res.accepted ?? 0) / Math.max(res.drafted ?? 0, 1) } } : {}),
        }) + '\n',
      );
    } else {
      process.stdout.write('\n');
      const mtp = v.mtp ? ` · MTP drafts kept ${res.accepted} of ${res.drafted} (${((100 * (res.accepted ?? 0)) / Math.max(res.drafted ?? 0, 1)).toFixed(1)}%)` : '';
      process.stderr.write(
        `[${res.promptTokens} prompt tokens in ${res.prefillSeconds.toFixed(2)} s · ${res.tokens.length} tokens at ${tps.toFixed(1)} t/s · ${res.finishReason}${mtp}]\n`,
      );
    }
  } finally {
    await m.model.unload();
  }
}

async function logits(v: Values): Promise<void> {
  const path = modelPath(v);
  if (typeof v.tokens !== 'string' || !v.tokens.trim()) throw new UsageError('--tokens 1,2,3 is required');
  const tokens = v.tokens.split(',').map((s) => {
    const n = Number(s.trim());
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`--tokens: '${s}' is not a token id`);
    return n;
  });
  const model = await native().loadModel(path, loadOptions(v));
  try {
    const adapter = typeof v.adapter === 'string' ? (await model.loadAdapter(v.adapter)).id : 0;
    const rows = await model.logits(tokens, !!v.all, adapter);
    process.stdout.write(`{"tokens":${JSON.stringify(tokens)},"logits":[${rows.map((r) => JSON.stringify(Array.from(r))).join(',')}]}\n`);
  } finally {
    await model.unload();
  }
}

async function bench(v: Values): Promise<void> {
  const path = modelPath(v);
  const json = !!v.json;
  const opts = loadOptions(v);
  const pp = int(v, 'pp', 512), tg = int(v, 'tg', 128), repeats = int(v, 'repeats', 1, 1);
  const depths = typeof v.depth === 'string' ? v.depth.split(',').map((d) => Number(d)) : [];
  if (depths.some((d) => !Number.isInteger(d) || d < 0)) throw new UsageError(`--depth must be a comma-separated list of token counts, got '${v.depth}'`);
  const depthTg = int(v, 'depth-tg', tg, 1);
  const depthFill = (v['depth-fill'] as string | undefined) ?? 'random';
  if (depthFill !== 'random' && depthFill !== 'prefill') throw new UsageError(`--depth-fill must be random or prefill, got '${depthFill}'`);
  const context = Math.max(opts.context ?? 0, pp + tg + 8, ...depths.map((d) => d + depthTg * repeats + 8));
  // One sequence at a time: the cache needs one context, not the default two.
  const model = await native().loadModel(path, { ...opts, context, cacheTokens: context + 16 }, progressBar(json));
  try {
    const info = model.info();
    const r = await model.benchmark({ pp, tg, repeats, depths, depthTg, depthFill });
    const bandwidth = await native().measureBandwidth(info.threads);
    // The decode bound: one step reads every weight once (the embedding table only when tied).
    const bound = (bandwidth * 1e9) / info.decodeBytes;
    const ds = info.config.deepseek;
    const out = {
      model: info.name,
      path: info.path,
      dtype_mix: info.dtypeMix,
      parameters: info.parameters,
      weight_bytes: info.weightBytes,
      threads: info.threads,
      isa: native().cpuInfo().isa,
      pp: r.pp,
      tg: r.tg,
      bandwidth_gbs: bandwidth,
      tg_bound_tps: bound,
      tg_fraction_of_bound: r.tg.tps / bound,
      ...(depths.length
        ? {
            mla: ds ? (opts.mlaAttention ?? 'auto') : undefined,
            kv_type: info.kvType,
            depth_fill: depthFill,
            // What a cache of the expanded per-head K and V would take per token (MLA models).
            expanded_kv_bytes_per_token: ds
              ? info.config.layers * info.config.heads * (ds.qkNopeHeadDim + ds.qkRopeHeadDim + ds.vHeadDim) * (info.kvType === 'f32' ? 4 : 2)
              : undefined,
            depths: r.depths.map((d) => ({ ...d, slowdown_vs_depth0: r.depths[0] ? r.depths[0].tps / d.tps : undefined })),
          }
        : {}),
    };
    if (json) process.stdout.write(JSON.stringify(out) + '\n');
    else {
      const mb = formatMegabytes;
      process.stdout.write(
        `${info.name} · ${info.threads} threads · ${out.isa}\n` +
          (pp > 0 ? `pp${pp}: ${r.pp.tps.toFixed(1)} t/s\n` : '') +
          (tg > 0 ? `tg${tg}: ${r.tg.tps.toFixed(2)} t/s (bound ${bound.toFixed(2)} t/s at ${bandwidth.toFixed(1)} GB/s: ${(100 * out.tg_fraction_of_bound).toFixed(0)}%)\n` : '') +
          r.depths.map((d) => `tg${d.tokens} @ depth ${d.depth}: ${d.tps.toFixed(2)} t/s · cache ${mb(d.cacheBytes)} · activations ${mb(d.workspaceBytes)}\n`).join(''),
      );
    }
  } finally {
    await model.unload();
  }
}

async function grad(v: Values): Promise<void> {
  if (typeof v.model !== 'string') throw new UsageError('--model PATH is required (a .gguf file or a Hugging Face model folder)');
  for (const k of ['adapter', 'out'])
    if (typeof v[k] !== 'string') throw new UsageError(`--${k} is required`);
  if ((typeof v.sft === 'string') === (typeof v.grpo === 'string')) throw new UsageError('give one of --sft FILE and --grpo ROLLOUTS.json');
  const dtype = (v.dtype as string | undefined) ?? 'f32';
  if (dtype !== 'f32' && dtype !== 'f64') throw new UsageError(`--dtype must be f32 or f64, got '${dtype}'`);
  if (typeof v.grpo === 'string') return gradGrpo(v, dtype);
  const { readFileSync } = await import('node:fs');
  const { parseSft, needsTokenizer } = await import('../train/sft.ts');
  const file = v.sft as string;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let tok;
  if (needsTokenizer(text)) {
    const { loadTokenizer, chatTemplateFor } = await import('../engine/open.ts');
    const tokenizer = loadTokenizer(v.model);
    const { template, error } = chatTemplateFor(tokenizer);
    if (error) process.stderr.write(`warning: ${error}; using the ${template.name} template\n`);
    tok = { tokenizer, template };
  }
  const sequences = parseSft(text, file, tok);
  const model = await native().loadModel(v.model, loadOptions(v), progressBar(!!v.json));
  try {
    const r = await model.loraGrad({ adapter: v.adapter as string, sequences, out: v.out as string, dtype });
    if (v.json) process.stdout.write(JSON.stringify({ loss: r.loss, target_tokens: r.targetTokens, sequences: sequences.length, out: v.out, dtype }) + '\n');
    else process.stdout.write(`loss ${r.loss.toFixed(6)} over ${r.targetTokens} target tokens in ${sequences.length} sequences · gradients (${dtype}) in ${v.out}\n`);
  } finally {
    await model.unload();
  }
}

async function gradGrpo(v: Values, dtype: 'f32' | 'f64'): Promise<void> {
  const { existsSync } = await import('node:fs');
  const file = v.grpo as string;
  if (!existsSync(file)) throw new Error(`${file}: no such file`);
  const model = await native().loadModel(v.model as string, loadOptions(v), progressBar(!!v.json));
  try {
    const r = await model.grpoGrad({ adapter: v.adapter as string, rollouts: file, out: v.out as string, dtype });
    const finite = (x: number) => (Number.isFinite(x) ? x : null);
    if (v.json)
      process.stdout.write(
        JSON.stringify({
          loss: r.loss, loss_tokens: r.lossTokens, sequences: r.sequences, masked_sequences: r.maskedSequences, advantages: r.advantages,
          frac_reward_zero_std: r.fracRewardZeroStd, kl: finite(r.kl), entropy: r.entropy, clip_ratio: { low_mean: r.clipLowMean, high_mean: r.clipHighMean,
            region_mean: r.clipRegionMean, low_min: finite(r.clipLowMin), high_max: finite(r.clipHighMax) }, out: v.out, dtype,
        }) + '\n',
      );
    else
      process.stdout.write(
        `GRPO loss ${r.loss.toFixed(6)} over ${r.lossTokens} completion tokens in ${r.sequences} sequences` +
          (r.maskedSequences ? ` (${r.maskedSequences} truncated, masked)` : '') +
          ` · clipped ${(100 * r.clipRegionMean).toFixed(1)}%` + (Number.isFinite(r.kl) ? ` · KL ${r.kl.toFixed(5)}` : '') +
          ` · gradients (${dtype}) in ${v.out}\n`,
      );
  } finally {
    await model.unload();
  }
}

/** The flags every `aha train` needs: --dataset (or its older name --data) and --out. */
function trainingFlags(v: Values): void {
  if (v.dataset !== undefined && v.data !== undefined) throw new UsageError('give --dataset or --data, not both (they are the same option)');
  if (typeof (v.dataset ?? v.data) !== 'string') throw new UsageError('--dataset FILE|ID is required (a JSONL file, or the id or name of a dataset of the app)');
  if (typeof v.out !== 'string') throw new UsageError('--out is required');
}

async function trainGrpo(v: Values): Promise<void> {
  if (typeof v.model !== 'string') throw new UsageError('--model PATH is required (a .gguf file or a Hugging Face model folder)');
  trainingFlags(v);
  if (typeof v.grader !== 'string' && typeof v['grader-config'] !== 'string') throw new UsageError('--grader LIST (or --grader-config FILE) is required');
  const { GRPO_DEFAULTS, rolloutCacheTokens, runGrpo } = await import('../train/grpo-run.ts');
  const { grpoStepRow, sampleRollouts } = await import('../train/record.ts');
  const { SFT_DEFAULTS } = await import('../train/sft-run.ts');
  const { graderFromConfig } = await import('../services/graders/config.ts');
  const KINDS = ['math', 'exact', 'multiple-choice', 'format', 'repetition', 'countdown', 'code'];
  const graders = (typeof v.grader === 'string' ? v.grader.split(',') : []).map((part) => {
    const [kind, w] = part.trim().split(':');
    if (!KINDS.includes(kind)) throw new UsageError(`--grader: unknown grader '${kind}' (${KINDS.join(', ')})`);
    const weight = w === undefined ? 1 : Number(w);
    if (!Number.isFinite(weight)) throw new UsageError(`--grader: the weight of ${kind} must be a number, got '${w}'`);
    return { grader: graderFromConfig({ name: kind, version: 1, kind }), weight };
  });
  if (typeof v['grader-config'] === 'string') {
    const { readFileSync } = await import('node:fs');
    const file = v['grader-config'];
    let list: unknown;
    try {
      list = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    if (!Array.isArray(list)) throw new Error(`${file}: expected an array of {"weight", "grader"}`);
    for (const [i, item] of list.entries()) {
      const { weight, grader } = (item ?? {}) as { weight?: unknown; grader?: unknown };
      if (typeof weight !== 'number' || !Number.isFinite(weight)) throw new Error(`${file}: [${i}].weight must be a number`);
      try {
        graders.push({ grader: graderFromConfig(grader), weight });
      } catch (e) {
        throw new Error(`${file}: [${i}]: ${(e as Error).message}`);
      }
    }
  }
  const pick = <T extends string>(key: string, allowed: readonly T[], fallback: T): T => {
    const s = (v[key] as string | undefined) ?? fallback;
    if (!allowed.includes(s as T)) throw new UsageError(`--${key} must be ${allowed.join(', ')}, got '${s}'`);
    return s as T;
  };
  const positive = (key: string, fallback: number) => {
    const n = float(v, key, fallback);
    if (!(n > 0)) throw new UsageError(`--${key} must be a positive number, got '${v[key]}'`);
    return n;
  };
  const d = GRPO_DEFAULTS;
  const epsilon = float(v, 'epsilon', d.epsilon);
  const config = {
    ...d,
    steps: int(v, 'steps', 100, 1),
    numGenerations: int(v, 'num-generations', d.numGenerations, 2),
    promptsPerStep: int(v, 'prompts-per-step', d.promptsPerStep, 1),
    maxCompletionTokens: int(v, 'max-tokens', d.maxCompletionTokens, 1),
    temperature: positive('temperature', d.temperature),
    lr: positive('lr', d.lr),
    lossType: pick('loss-type', ['dapo', 'grpo', 'bnpo', 'dr_grpo'] as const, d.lossType),
    beta: float(v, 'beta', d.beta),
    epsilon,
    epsilonHigh: float(v, 'epsilon-high', epsilon),
    scaleRewards: pick('scale-rewards', ['group', 'batch', 'none'] as const, d.scaleRewards),
    maskTruncatedCompletions: !!v['mask-truncated'],
    microBatchTokens: int(v, 'micro-batch-tokens', 0),
    seed: int(v, 'seed', d.seed),
    rank: int(v, 'rank', SFT_DEFAULTS.rank, 1),
    alpha: positive('alpha', SFT_DEFAULTS.alpha),
    targets: typeof v.targets === 'string' ? v.targets.split(',').map((t) => t.trim()).filter(Boolean) : SFT_DEFAULTS.targets,
    weightDecay: 0,
    maxGradNorm: 1,
  };
  const flag: Record<string, keyof typeof config> = {
    'num-generations': 'numGenerations', 'prompts-per-step': 'promptsPerStep', 'max-tokens': 'maxCompletionTokens', temperature: 'temperature', lr: 'lr',
    'loss-type': 'lossType', beta: 'beta', epsilon: 'epsilon', 'epsilon-high': 'epsilonHigh', 'scale-rewards': 'scaleRewards', 'mask-truncated': 'maskTruncatedCompletions',
    'micro-batch-tokens': 'microBatchTokens', seed: 'seed', rank: 'rank', alpha: 'alpha', targets: 'targets',
  };
  const given = Object.entries(flag).filter(([f]) => v[f] !== undefined).map(([, k]) => k);
  const sampleGroups = int(v, 'sample-groups', 1);
  const { loadTokenizer, chatTemplateFor } = await import('../engine/open.ts');
  const tokenizer = loadTokenizer(v.model);
  const { template, error } = chatTemplateFor(tokenizer);
  if (error) process.stderr.write(`warning: ${error}; using the ${template.name} template\n`);
  const session = await trainingSession(v, 'grpo', { ...config, graders: graders.map((g) => ({ name: g.grader.name, weight: g.weight })) });
  const { json } = session;
  let model: NativeModel | undefined;
  try {
    const { latestCheckpoint } = await import('../train/sft-run.ts');
    const { readFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    // A resumed run steps with its checkpoint's batch shape (runGrpo refuses a different one given).
    const resumeFrom = v.resume ? latestCheckpoint(session.out) : undefined;
    const shape = resumeFrom ? { ...config, ...(JSON.parse(readFileSync(join(resumeFrom, 'trainer_state.json'), 'utf8')) as { config?: object }).config } : config;
    const opts = loadOptions(v);
    const cacheTokens = Math.max(opts.cacheTokens ?? 0, rolloutCacheTokens(session.data.text, tokenizer, template, shape));
    model = await native().loadModel(v.model, { ...opts, cacheTokens }, progressBar(json));
    const res = await runGrpo({
      model, modelPath: v.model, tokenizer, template, graders, dataFile: session.data.label, dataText: session.data.text, out: session.out, config, given,
      resume: !!v.resume,
      checkpointEvery: int(v, 'checkpoint-every', 0),
      control: session.control,
      events: {
        warn: (m) => session.say(`warning: ${m}`),
        start: (step, total) => session.start(step, total),
        step: (m, rollouts) => {
          session.recorder.step(grpoStepRow(m), sampleRollouts(rollouts, config.numGenerations, sampleGroups));
          if (json) process.stdout.write(JSON.stringify({ event: 'step', ...m }) + '\n');
          session.show(
            { step: m.step, totalSteps: config.steps, loss: m.loss, reward: m.reward.mean, tokensPerSecond: m.rolloutTokensPerSecond },
            `step ${m.step}/${config.steps} · reward ${m.reward.mean.toFixed(3)} ± ${m.reward.std.toFixed(3)} · zero-std groups ${(100 * m.fracRewardZeroStd).toFixed(0)}% · ` +
              `length ${m.completionLength.mean.toFixed(1)} (clipped ${(100 * m.completionLength.clippedShare).toFixed(0)}%) · grad norm ${m.gradNorm.toFixed(3)}` +
              (m.kl !== null ? ` · KL ${m.kl.toFixed(4)}` : '') + ` · ${m.seconds.total.toFixed(1)} s`,
          );
        },
        checkpoint: (step, dir) => {
          if (json) process.stdout.write(JSON.stringify({ event: 'checkpoint', step, path: dir }) + '\n');
        },
      },
    });
    if (session.ended(res)) return;
    if (json) process.stdout.write(JSON.stringify({ event: 'done', steps: res.steps, adapter: res.adapter, resumed_from: res.resumedFrom ?? null, run_id: session.recorder.runId, database: session.dbFile }) + '\n');
    else
      process.stdout.write(
        `trained ${res.steps} GRPO steps · reward ${res.first?.reward.mean.toFixed(3)} → ${res.last?.reward.mean.toFixed(3)} · adapter in ${res.adapter} · run ${session.recorder.runId} in ${session.dbFile}\n`,
      );
  } catch (e) {
    session.failed(e as Error);
    throw e;
  } finally {
    session.close();
    await model?.unload();
  }
}

async function trainSft(v: Values): Promise<void> {
  const full = !!v.full;
  if (full) {
    if ((typeof v.model === 'string') === (typeof v.config === 'string'))
      throw new UsageError('--full needs one of --model PATH (the model to train further) and --config CONFIG.json (a fresh model)');
    if (typeof v.config === 'string' && typeof v.tokenizer !== 'string') throw new UsageError('--config needs --tokenizer DIR (the fresh model\'s tokenizer)');
    const lora = ['rank', 'alpha', 'rslora', 'dropout', 'targets'].filter((k) => v[k] !== undefined);
    if (lora.length) throw new UsageError(`${lora.map((k) => `--${k}`).join(', ')}: LoRA options, but --full trains every parameter`);
  } else {
    if (typeof v.model !== 'string') throw new UsageError('--model PATH is required (a .gguf file or a Hugging Face model folder)');
    for (const k of ['config', 'tokenizer']) if (v[k] !== undefined) throw new UsageError(`--${k} is for full training (--full)`);
  }
  const start = (v.model ?? v.config) as string;
  trainingFlags(v);
  const { SFT_DEFAULTS, LORA_TARGET_NAMES, ADAPTER_FILES, formatMemoryEstimate, loraMemoryEstimate, loraTrainer, runSft } = await import('../train/sft-run.ts');
  const { sftStepRow } = await import('../train/record.ts');
  const d = SFT_DEFAULTS;
  const positive = (key: string, fallback: number) => {
    const n = float(v, key, fallback);
    if (!(n > 0)) throw new UsageError(`--${key} must be a positive number, got '${v[key]}'`);
    return n;
  };
  const schedule = (v.schedule as string | undefined) ?? d.schedule;
  if (!['cosine', 'linear', 'constant'].includes(schedule)) throw new UsageError(`--schedule must be cosine, linear or constant, got '${schedule}'`);
  if (v.rank !== undefined && Number(v.rank) === 0) throw new UsageError('--rank must be at least 1 (a rank-0 adapter has no parameters)');
  const targets = typeof v.targets === 'string' ? v.targets.split(',').map((t) => t.trim()).filter(Boolean) : d.targets;
  const unknown = targets.filter((t) => !LORA_TARGET_NAMES.includes(t));
  if (unknown.length) throw new UsageError(`--targets: unknown module${unknown.length > 1 ? 's' : ''} ${unknown.map((t) => `'${t}'`).join(', ')} (the models have: ${LORA_TARGET_NAMES.join(', ')})`);
  if (!targets.length) throw new UsageError('--targets: no modules given');
  const config = {
    full,
    rank: int(v, 'rank', d.rank, 1),
    alpha: positive('alpha', d.alpha),
    targets,
    rslora: !!v.rslora,
    dropout: float(v, 'dropout', d.dropout),
    lr: positive('lr', d.lr),
    schedule: schedule as 'cosine' | 'linear' | 'constant',
    warmup: int(v, 'warmup', d.warmup),
    weightDecay: float(v, 'weight-decay', d.weightDecay),
    maxGradNorm: float(v, 'max-grad-norm', d.maxGradNorm),
    epochs: int(v, 'epochs', d.epochs, 1),
    batch: int(v, 'batch', d.batch, 1),
    gradAccum: int(v, 'grad-accum', d.gradAccum, 1),
    maxLen: int(v, 'max-len', d.maxLen, 2),
    seed: int(v, 'seed', d.seed),
    checkpointLayers: !!v['checkpoint-layers'],
  };
  if (!(config.dropout >= 0 && config.dropout < 1)) throw new UsageError(`--dropout must be in [0, 1), got '${v.dropout}'`);
  if (full && config.checkpointLayers) throw new UsageError('--checkpoint-layers is for LoRA runs (full training keeps every activation)');
  const flag: Record<string, keyof typeof config> = {
    full: 'full', rank: 'rank', alpha: 'alpha', targets: 'targets', rslora: 'rslora', dropout: 'dropout', lr: 'lr', schedule: 'schedule', warmup: 'warmup',
    'weight-decay': 'weightDecay', 'max-grad-norm': 'maxGradNorm', epochs: 'epochs', batch: 'batch', 'grad-accum': 'gradAccum', 'max-len': 'maxLen', seed: 'seed',
    'checkpoint-layers': 'checkpointLayers',
  };
  // --full counts as given either way: a run of the other kind cannot be resumed.
  const given = Object.entries(flag).filter(([f]) => f === 'full' || v[f] !== undefined).map(([, k]) => k);
  const session = await trainingSession(v, 'sft', config);
  const { json } = session;
  let model: NativeModel | undefined;
  try {
    const { needsTokenizer } = await import('../train/sft.ts');
    const { loadTokenizer, chatTemplateFor } = await import('../engine/open.ts');
    const tokenizerSource = (v.tokenizer ?? v.model) as string;
    let tok;
    if (needsTokenizer(session.data.text)) {
      const tokenizer = loadTokenizer(tokenizerSource);
      const { template, error } = chatTemplateFor(tokenizer);
      if (error) session.say(`warning: ${error}; using the ${template.name} template`);
      tok = { tokenizer, template };
    }
    let trainer;
    if (full) {
      const { MODEL_FILES, fullTrainer, tokenizerFiles } = await import('../train/full.ts');
      const files = tokenizerFiles(tokenizerSource);
      const tokenizerVocab = (tok?.tokenizer ?? loadTokenizer(tokenizerSource)).vocabSize;
      const threads = int(v, 'threads', 0, 1) || undefined;
      trainer = { createTrainer: fullTrainer({ model: v.model as string | undefined, config: v.config as string | undefined, tokenizer: files, tokenizerVocab, threads }), outputs: [...MODEL_FILES, ...files.keys()] };
    } else {
      model = await native().loadModel(start, { ...loadOptions(v), context: Math.max(config.maxLen, 16) }, progressBar(json));
      const mem = loraMemoryEstimate(model.info(), config);
      if (json) process.stdout.write(JSON.stringify({ event: 'memory', ...mem }) + '\n');
      else session.say(formatMemoryEstimate(mem, config.checkpointLayers));
      trainer = { createTrainer: loraTrainer(model, start), outputs: ADAPTER_FILES };
    }
    const res = await runSft({
      control: session.control,
      ...trainer,
      modelPath: start,
      dataFile: session.data.label,
      dataText: session.data.text,
      tok,
      out: session.out,
      config,
      given,
      resume: !!v.resume,
      checkpointEvery: int(v, 'checkpoint-every', 0),
      events: {
        warn: (m) => session.say(`warning: ${m}`),
        start: (step, total) => session.start(step, total),
        step: (m) => {
          session.recorder.step(sftStepRow(m));
          if (json)
            process.stdout.write(
              JSON.stringify({ event: 'step', step: m.step, total_steps: m.totalSteps, epoch: m.epoch, loss: m.loss, lr: m.lr, grad_norm: m.gradNorm, tokens_per_s: m.tokensPerSecond, tokens: m.tokens, target_tokens: m.targetTokens }) + '\n',
            );
          session.show(
            { step: m.step, totalSteps: m.totalSteps, loss: m.loss, tokensPerSecond: m.tokensPerSecond },
            `step ${m.step}/${m.totalSteps} · epoch ${m.epoch.toFixed(2)} · loss ${m.loss.toFixed(4)} · lr ${m.lr.toExponential(2)} · grad norm ${m.gradNorm.toFixed(3)} · ${m.tokensPerSecond.toFixed(0)} tok/s`,
          );
        },
        checkpoint: (step, dir) => {
          if (json) process.stdout.write(JSON.stringify({ event: 'checkpoint', step, path: dir }) + '\n');
        },
      },
    });
    if (session.ended(res)) return;
    if (json)
      process.stdout.write(
        JSON.stringify({ event: 'done', steps: res.steps, first_loss: res.firstLoss, last_loss: res.lastLoss, [full ? 'model' : 'adapter']: res.output, resumed_from: res.resumedFrom ?? null, run_id: session.recorder.runId, database: session.dbFile }) + '\n',
      );
    else process.stdout.write(`trained ${res.steps} steps · loss ${res.firstLoss.toFixed(4)} → ${res.lastLoss.toFixed(4)} · ${full ? 'model' : 'adapter'} in ${res.output} · run ${session.recorder.runId} in ${session.dbFile}\n`);
  } catch (e) {
    session.failed(e as Error);
    throw e;
  } finally {
    session.close();
    await model?.unload();
  }
}

/**
 * What `aha train sft|grpo` share around the loop: the app's database (--data-dir), the data
 * (--dataset FILE|ID), the run's record, Ctrl-C and SIGTERM (the run stops after the step under
 * way, with a checkpoint; a second one quits at once), and the progress bar on a terminal.
 */
async function trainingSession(v: Values, kind: 'sft' | 'grpo', config: object) {
  const { openDatabase } = await import('../db/index.ts');
  const { defaultDataDir } = await import('../services/app.ts');
  const { resolveTrainingData } = await import('../train/data.ts');
  const { RunRecorder } = await import('../train/record.ts');
  const { RunController } = await import('../train/control.ts');
  const { StepProgress } = await import('./progress.ts');
  const { mkdirSync } = await import('node:fs');
  const { join, resolve } = await import('node:path');
  const json = !!v.json;
  const tty = !json && !!process.stderr.isTTY;
  const dataDir = resolve((v['data-dir'] as string | undefined) ?? defaultDataDir());
  mkdirSync(dataDir, { recursive: true });
  const dbFile = join(dataDir, 'aha.db');
  const db = openDatabase(dbFile);
  let bar: InstanceType<typeof StepProgress> | undefined;
  const say = (text: string) => (bar ? bar.note(text) : process.stderr.write(text + '\n'));
  let data;
  try {
    data = resolveTrainingData(db, dbFile, (v.dataset ?? v.data) as string, kind);
  } catch (e) {
    db.close();
    throw e;
  }
  if (data.note) say(data.note);
  const out = resolve(v.out as string);
  mkdirSync(out, { recursive: true });
  const recorder = RunRecorder.begin(
    db,
    { kind, model: resolve((v.model ?? v.config) as string), dataset: data.label, datasetId: data.dataset?.id ?? null, config, outDir: out },
    { resume: !!v.resume, warn: (m) => say(`warning: ${m}`) },
  );
  if (json) process.stdout.write(JSON.stringify({ event: 'run', run_id: recorder.runId, database: dbFile, dataset: data.label }) + '\n');
  else say(`recording run ${recorder.runId} in ${dbFile}`);
  const control = new RunController({ paused: () => recorder.paused(), resumed: () => recorder.resumed() });
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      recorder.end('stopped');
      process.exit(130);
    }
    signalled = true;
    control.stop();
    say(`stopping after this step (${signal === 'SIGINT' ? 'Ctrl-C' : signal}; Ctrl-C again to quit at once)`);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const endBar = () => {
    bar?.end();
    bar = undefined;
  };
  return {
    dbFile,
    data,
    out,
    recorder,
    control,
    json,
    say,
    start(step: number, totalSteps: number) {
      recorder.start(step, totalSteps);
      if (tty) bar = new StepProgress(process.stderr, step);
    },
    /** A step: the bar on a terminal, else the plain line (with --json the caller prints the step). */
    show(fields: ProgressFields, plain: string) {
      if (bar) bar.update(fields);
      else if (!json) process.stderr.write(plain + '\n');
    },
    /** Records how the loop ended; true (after saying how to go on) when it was stopped. */
    ended(res: { steps: number; stoppedAt?: string }): boolean {
      endBar();
      recorder.end(res.stoppedAt ? 'stopped' : 'done');
      if (!res.stoppedAt) return false;
      if (json) process.stdout.write(JSON.stringify({ event: 'stopped', step: res.steps, checkpoint: res.stoppedAt, run_id: recorder.runId, database: dbFile }) + '\n');
      process.stderr.write(`stopped at step ${res.steps}; continue from ${res.stoppedAt} with the same command and --resume\n`);
      return true;
    },
    failed(e: Error) {
      endBar();
      recorder.end('failed', e.message);
    },
    close() {
      endBar();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      db.close();
    },
  };
}

async function info(v: Values): Promise<void> {
  const path = modelPath(v);
  const model = await native().loadModel(path, loadOptions(v));
  try {
    const i = model.info();
    if (v.json) process.stdout.write(JSON.stringify(i) + '\n');
    else {
      const gb = (b: number) => `${(b / 1e9).toFixed(2)} GB`;
      process.stdout.write(
        `${i.name} (${i.architecture}, ${i.format})\n` +
          `parameters: ${(i.parameters / 1e9).toFixed(3)} B · weights ${gb(i.weightBytes)}\n` +
          `dtypes: ${Object.entries(i.dtypeMix).map(([k, n]) => `${k} ${((100 * n) / i.parameters).toFixed(1)}%`).join(', ')}\n` +
          `context: ${i.contextLength} trained, ${i.context} loaded · KV cache ${gb(i.kvBytes)}\n`,
      );
    }
  } finally {
    await model.unload();
  }
}

async function serveCommand(v: Values): Promise<void> {
  const port = int(v, 'port', 8484);
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  const host = (v.host as string | undefined) ?? '127.0.0.1';
  const apiKey = (v['api-key'] as string | undefined) ?? process.env.AHA_API_KEY;
  const { createApp, defaultDataDir } = await import('../services/app.ts');
  const { forkHost } = await import('../engine-host/client.ts');
  const { serve } = await import('../server/server.ts');
  const { fileURLToPath } = await import('node:url');
  const { existsSync } = await import('node:fs');
  const dataDir = (v['data-dir'] as string | undefined) ?? defaultDataDir();
  const app = await createApp({ dataDir, spawnHost: forkHost(), shell: 'server' });
  const rendererDir = fileURLToPath(new URL('../../out/renderer', import.meta.url));
  if (!existsSync(rendererDir)) process.stderr.write('note: the app\'s pages are not built (run `npm run build`); the APIs work without them\n');
  if (!['127.0.0.1', '::1', 'localhost'].includes(host) && !apiKey)
    process.stderr.write(`warning: serving ${host} without --api-key: anyone on your network can use the app\n`);
  const server = await serve(app, { host, port, apiKey, rendererDir });
  process.stdout.write(`Aha is running at ${server.url}${apiKey ? '/?key=…' : '/'}  (OpenAI API: ${server.url}/v1 · data: ${dataDir})\n`);
  if (typeof v.model === 'string') {
    const entry = app.library.add(v.model);
    app.bus.emit('models.changed', { models: app.library.list() });
    const state = await app.engine.load(entry);
    process.stdout.write(`${state.message}\n`);
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
  await app.close();
}

async function modelsCommand(v: Values): Promise<void> {
  const { openDatabase } = await import('../db/index.ts');
  const { ModelLibrary } = await import('../services/models/library.ts');
  const { defaultDataDir } = await import('../services/app.ts');
  const { mkdirSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dataDir = (v['data-dir'] as string | undefined) ?? defaultDataDir();
  mkdirSync(dataDir, { recursive: true });
  const db = openDatabase(join(dataDir, 'aha.db'));
  try {
    const models = new ModelLibrary(db, { warn: (m) => process.stderr.write(`warning: ${m}\n`) }).refresh();
    if (v.json) process.stdout.write(JSON.stringify(models) + '\n');
    else if (!models.length) process.stdout.write('No models yet. Add one with `aha serve --model PATH` or in the app; LM Studio and Ollama folders are scanned.\n');
    else
      for (const m of models)
        process.stdout.write(
          `${m.missing ? '(missing) ' : ''}${m.name} · ${m.architecture} · ${m.quantization} · ${(m.parameters / 1e9).toFixed(2)} B params · ${(m.sizeBytes / 1e9).toFixed(2)} GB · ctx ${m.contextLength} · ${m.source}\n  ${m.path}\n`,
        );
  } finally {
    db.close();
  }
}

function help(): string {
  return (
    'aha — run reasoning models locally\n\nUsage: aha <command> [options]\n\nCommands:\n' +
    Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`).join('\n') +
    '\n\nRun `aha <command> --help` for a command\'s options.\n'
  );
}

export async function main(argv: string[]): Promise<number> {
  let [name, ...rest] = argv;
  // Two-word commands: `aha train sft`.
  if (name && rest.length && !rest[0].startsWith('-') && commands[`${name} ${rest[0]}`]) [name, ...rest] = [`${name} ${rest[0]}`, ...rest.slice(1)];
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    process.stderr.write(`aha: unknown command '${name}'\n\n${help()}`);
    return 2;
  }
  let values: Values;
  try {
    values = parseArgs({ args: rest, options: { ...common, ...cmd.options }, strict: true, allowPositionals: false }).values as Values;
  } catch (e) {
    process.stderr.write(`aha ${name}: ${(e as Error).message}\n\nUsage: ${cmd.usage}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`Usage: ${cmd.usage}\n`);
    return 0;
  }
  try {
    await cmd.run(values);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`aha ${name}: ${e.message}\n\nUsage: ${cmd.usage}\n`);
      return 2;
    }
    process.stderr.write(`aha ${name}: ${(e as Error).message}\n`);
    return 1;
  }
}
