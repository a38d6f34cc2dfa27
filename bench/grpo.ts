// The GRPO benchmark (issue 6) on the Qwen2-0.5B-shaped random model (bench/make-model.ts
// qwen0.5b) with a fresh LoRA r16 / alpha 32 on all seven projections:
//  - rollout tokens/s: G = 8 completions of one prompt decoded together (the prompt's KV blocks
//    shared) against one completion alone, the same prompt and length;
//  - one GRPO step as the loop runs it: G = 8 × 128-token completions of 4 prompts sampled with
//    the adapter on, rewards (a stand-in rule: a grader's cost is the TS loop's, not the engine's),
//    then the engine's step (the policy's forward and backward, the reference pass when β > 0,
//    AdamW), with the time split into rollout, scoring (reference pass), the policy's forward, its
//    backward (with the lm head's log-probs) and optimizer; peak RSS. Writes bench/results/grpo-<date>.json.
//
//   node --import tsx bench/grpo.ts [--type f16|q8_0] [--prompts 4] [--g 8] [--len 128] [--beta 0] [--threads 2]
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { native } from '../src-main/engine/native.ts';
import { benchModelPath, makeBenchModel, type BenchType } from './make-model.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    type: { type: 'string', default: 'q8_0' },
    prompts: { type: 'string', default: '4' },
    g: { type: 'string', default: '8' },
    len: { type: 'string', default: '128' },
    beta: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
  },
});
const type = values.type as BenchType;
const nPrompts = Number(values.prompts), G = Number(values.g), len = Number(values.len), beta = Number(values.beta), threads = Number(values.threads);
const path = benchModelPath(type, 'qwen0.5b');
if (!existsSync(path)) {
  console.error(`making ${path} ...`);
  makeBenchModel(type, path, 'qwen0.5b');
}
const model = await native().loadModel(path, { threads, context: 1024, cacheTokens: 16 * 1024 });
const trainer = await model.createTrainer({
  init: { rank: 16, alpha: 32, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 },
});
const adapter = trainer.adapterId;
const prompt = (i: number) => Array.from({ length: 64 }, (_, t) => (i * 7919 + t * 104729) % 32000);
const sample = { temperature: 1.0, maxTokens: len, ignoreEos: true, adapter };

// Rollout throughput: one sequence, then G together.
const timeIt = async (n: number) => {
  const t0 = performance.now();
  const res = await model.generate(Array.from({ length: n }, (_, k) => ({ ...sample, prompt: prompt(0), seed: k + 1 })));
  const s = (performance.now() - t0) / 1000;
  return { tokens: res.reduce((a, r) => a + r.tokens.length, 0), seconds: s };
};
await timeIt(1);  // warm-up
const one = await timeIt(1);
const group = await timeIt(G);
console.error(`rollout: 1 sequence ${(one.tokens / one.seconds).toFixed(1)} tokens/s, ${G} together ${(group.tokens / group.seconds).toFixed(1)} tokens/s`);

// One GRPO step.
const t0 = performance.now();
const rollouts = await model.generate(
  Array.from({ length: nPrompts * G }, (_, k) => ({ ...sample, prompt: prompt(1 + Math.floor(k / G)), seed: 100 + k })),
);
const rolloutSeconds = (performance.now() - t0) / 1000;
const t1 = performance.now();
const groups = Array.from({ length: nPrompts }, (_, p) => {
  const completions = rollouts.slice(p * G, (p + 1) * G).map((r) => r.tokens);
  // A rule reward: the share of even token ids (cheap, deterministic, varies within a group).
  const rewards = completions.map((c) => c.filter((t) => t % 2 === 0).length / Math.max(1, c.length));
  return { prompt: prompt(1 + p), completions, rewards };
});
const gradingSeconds = (performance.now() - t1) / 1000;
const t2 = performance.now();
const step = await trainer.grpoStep({ groups, loss: { type: 'dapo', beta, epsilon: 0.2, temperature: 1.0 }, lr: 5e-6 });
const stepSeconds = (performance.now() - t2) / 1000;
const rssMiB = process.resourceUsage().maxRSS / 1024;
const completionTokens = rollouts.reduce((a, r) => a + r.tokens.length, 0);
const result = {
  model: `Qwen2-0.5B-shaped random ${type}`,
  lora: { rank: 16, alpha: 32, targets: 7 },
  threads,
  rollout: {
    one_sequence_tps: one.tokens / one.seconds,
    group_tps: group.tokens / group.seconds,
    g: G,
    speedup: group.tokens / group.seconds / (one.tokens / one.seconds),
  },
  step: {
    prompts: nPrompts,
    g: G,
    completion_tokens: completionTokens,
    tokens_through_model: step.tokens,
    beta,
    seconds: rolloutSeconds + gradingSeconds + stepSeconds,
    rollout_seconds: rolloutSeconds,
    grading_seconds: gradingSeconds,
    scoring_seconds: step.referenceSeconds,
    forward_seconds: step.forwardSeconds,
    backward_seconds: step.policySeconds - step.forwardSeconds,
    optimizer_seconds: step.optimizerSeconds,
    other_seconds: stepSeconds - step.referenceSeconds - step.policySeconds - step.optimizerSeconds,
    loss: step.loss,
  },
  peak_rss_mib: rssMiB,
};
const st = result.step;
console.log(
  `rollout ${result.rollout.one_sequence_tps.toFixed(1)} t/s alone, ${result.rollout.group_tps.toFixed(1)} t/s for G = ${G} (${result.rollout.speedup.toFixed(2)}x); ` +
    `GRPO step ${st.seconds.toFixed(1)} s = rollout ${st.rollout_seconds.toFixed(1)} + grading ${st.grading_seconds.toFixed(3)} + scoring ${st.scoring_seconds.toFixed(1)} ` +
    `+ forward ${st.forward_seconds.toFixed(1)} + backward ${st.backward_seconds.toFixed(1)} + optimizer ${st.optimizer_seconds.toFixed(3)} (+ ${st.other_seconds.toFixed(2)}), peak RSS ${rssMiB.toFixed(0)} MiB`,
);
await model.unload();
mkdirSync(join(here, 'results'), { recursive: true });
const out = join(here, 'results', `grpo-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`);
writeFileSync(out, JSON.stringify({ machine: { cpu: cpus()[0]?.model, logical_cpus: cpus().length }, result }, null, 2) + '\n');
console.log(`report: ${out}`);
