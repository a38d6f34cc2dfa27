// The training benchmark (issue 5): LoRA r16 / alpha 32 on all seven projections of a
// Qwen2-0.5B-shaped random model (bench/make-model.ts qwen0.5b), batches of 4 sequences of 512
// tokens, through the engine's trainer (forward, backward, clipping, AdamW): tokens/s and peak
// RSS, and the step as a fraction of the FLOP bound. The bound: a frozen base costs about
// 4 × (non-embedding parameters + the lm head) FLOPs per token (forward 2, backward through the
// inputs 2; the LoRA terms are small), against the matmul throughput this machine shows in the
// same run for the same weights: the model's own pp512 prefill, 2 × those parameters × tokens / s.
// Writes bench/results/train-<date>.json.
//
//   node --import tsx bench/train.ts [--type f16|q8_0] [--steps 2] [--batch 4] [--seq 512] [--threads 2] [--checkpoint-layers]
// (one setting per process, so that peak RSS is that setting's)
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { native as loadNative } from '../src-main/engine/native.ts';
import { benchModelPath, makeBenchModel, SHAPE_05B, type BenchType } from './make-model.ts';

const here = dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    type: { type: 'string', default: 'f16' },
    steps: { type: 'string', default: '2' },
    batch: { type: 'string', default: '4' },
    seq: { type: 'string', default: '512' },
    threads: { type: 'string', default: '2' },
    'checkpoint-layers': { type: 'boolean', default: false },
  },
});
const checkpointLayers = !!values['checkpoint-layers'];
const type = values.type as BenchType;
const steps = Number(values.steps), batch = Number(values.batch), seq = Number(values.seq), threads = Number(values.threads);

const path = benchModelPath(type, 'qwen0.5b');
if (!existsSync(path)) {
  console.error(`making ${path} ...`);
  makeBenchModel(type, path, 'qwen0.5b');
}
const native = loadNative();
const model = await native.loadModel(path, { threads, context: Math.max(seq, 512) + 8 });
const S = SHAPE_05B, hd = S.hidden / S.heads;
const perLayer = S.hidden * (S.heads * hd) * 2 + S.hidden * (S.kvHeads * hd) * 2 + 3 * S.hidden * S.ffn;
const denseParams = S.layers * perLayer + S.hidden * S.vocab;  // the projections and the lm head

// The machine's matmul throughput on these weights: the model's own prefill.
const pp = (await model.benchmark({ pp: 512, tg: 0 })).pp.tps;
const peakFlops = 2 * denseParams * pp;

const trainer = await model.createTrainer({
  init: { rank: 16, alpha: 32, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], seed: 1 },
  checkpointLayers,
});
let x = 12345;
const rand = () => ((x = (x * 1103515245 + 12345) % 2147483648), x);
const micro = () => Array.from({ length: batch }, () => {
  const ids = Array.from({ length: seq }, () => rand() % 32000);
  return { inputIds: ids, labels: ids };
});
const times: number[] = [];
let loss = 0;
for (let i = 0; i <= steps; i++) {
  const t0 = performance.now();
  const r = await trainer.step({ microBatches: [micro()], lr: 1e-4 });
  const s = (performance.now() - t0) / 1000;
  loss = r.loss;
  if (i > 0) times.push(s);  // the first step warms up (buffers, pages)
  console.error(`step ${i}${i === 0 ? ' (warm-up)' : ''}: ${s.toFixed(1)} s, loss ${r.loss.toFixed(3)}`);
}
const step = times.reduce((a, b) => a + b, 0) / times.length;
const tokens = batch * seq;
const tps = tokens / step;
const flops = 4 * denseParams * tokens;
const rssMiB = process.resourceUsage().maxRSS / 1024;
const result = {
  model: `Qwen2-0.5B-shaped random ${type}`,
  lora: { rank: 16, alpha: 32, targets: 7 },
  batch,
  seq,
  threads,
  checkpointing: checkpointLayers,
  step_seconds: step,
  tokens_per_second: tps,
  loss,
  peak_rss_mib: rssMiB,
  prefill_tps: pp,
  matmul_peak_gflops: peakFlops / 1e9,
  train_gflops: flops / step / 1e9,
  fraction_of_flop_bound: flops / step / peakFlops,
};
console.log(
  `${type}${checkpointLayers ? ' (checkpointing)' : ''}: ${tps.toFixed(1)} tokens/s (${step.toFixed(1)} s per step of ${tokens} tokens), peak RSS ${rssMiB.toFixed(0)} MiB, ` +
    `${result.train_gflops.toFixed(1)} GFLOP/s = ${(100 * result.fraction_of_flop_bound).toFixed(1)}% of the ${result.matmul_peak_gflops.toFixed(0)} GFLOP/s the same weights prefill at`,
);
await model.unload();
mkdirSync(join(here, 'results'), { recursive: true });
const out = join(here, 'results', `train-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`);
writeFileSync(out, JSON.stringify({ machine: { cpu: cpus()[0]?.model, logical_cpus: cpus().length }, result }, null, 2) + '\n');
console.log(`report: ${out}`);
