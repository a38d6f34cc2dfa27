// The engine benchmark: `aha bench` on a random model of a fixed shape in F16, Q8_0 and Q4_K_M
// (made by bench/make-model.ts when missing), pp512 and tg128 on 2 threads, with the read
// bandwidth measured in the same run and tg as a fraction of the bound from the weight bytes a
// decode step reads (for MoE: the active ones). Shapes: dense, the R1-Distill-Qwen-1.5B shape
// (issue 2); moe, the scaled-down DeepSeek-V3 (issue 4). Writes bench/results/engine-<date>.json
// (engine-moe-<date>.json).
//
//   node --import tsx bench/run.ts [--shape dense|moe] [--types f16,q8_0,q4_K_M] [--threads 2] [--pp 512] [--tg 128]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchModelPath, makeBenchModel, type BenchShape } from './make-model.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const { values } = parseArgs({
  options: { shape: { type: 'string', default: 'dense' }, types: { type: 'string', default: 'f16,q8_0,q4_K_M' }, threads: { type: 'string', default: '2' }, pp: { type: 'string', default: '512' }, tg: { type: 'string', default: '128' } },
});

const shape = values.shape as BenchShape;
if (shape !== 'dense' && shape !== 'moe') throw new Error(`--shape must be dense or moe, not ${values.shape}`);
// The figures to beat on this machine kind: ik_llama.cpp's (issue 2; for moe, issue 4, with its
// best flags: above llama.cpp's 216 / 60 on q8_0 and 221 / 81 on q4_K_M).
const TARGETS: Record<string, { pp?: number; tg?: number }> =
  shape === 'dense' ? { q8_0: { pp: 115, tg: 12 }, q4_K_M: { tg: 15 } } : { q8_0: { pp: 336, tg: 90 }, q4_K_M: { pp: 393, tg: 117 } };

const results = [];
for (const type of values.types!.split(',') as Array<'f16' | 'q8_0' | 'q4_K_M'>) {
  const model = benchModelPath(type, shape);
  if (!existsSync(model)) {
    console.error(`making ${model} ...`);
    makeBenchModel(type, model, shape);
  }
  const r = spawnSync(process.execPath, [join(root, 'bin/aha.mjs'), 'bench', '--model', model, '--pp', values.pp!, '--tg', values.tg!, '--threads', values.threads!, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`aha bench failed for ${type}: ${r.stderr}`);
  const j = JSON.parse(r.stdout);
  const row = { type, ...j, target: TARGETS[type] ?? null };
  results.push(row);
  console.log(
    `${type.padEnd(7)} pp${j.pp.tokens} ${j.pp.tps.toFixed(1).padStart(6)} t/s   tg${j.tg.tokens} ${j.tg.tps.toFixed(2).padStart(6)} t/s ` +
      `(${(100 * j.tg_fraction_of_bound).toFixed(0)}% of ${j.tg_bound_tps.toFixed(2)} t/s at ${j.bandwidth_gbs.toFixed(1)} GB/s)` +
      (TARGETS[type] ? `   target: pp ${TARGETS[type].pp ?? '-'} / tg ${TARGETS[type].tg ?? '-'}` : ''),
  );
}
mkdirSync(join(here, 'results'), { recursive: true });
const out = join(here, 'results', `engine-${shape === 'moe' ? 'moe-' : ''}${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`);
writeFileSync(out, JSON.stringify({ machine: { cpu: cpus()[0]?.model, logical_cpus: cpus().length }, results }, null, 2) + '\n');
console.log(`report: ${out}`);
