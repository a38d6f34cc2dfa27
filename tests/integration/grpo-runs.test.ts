// GRPO runs recorded in the app's database, on a tiny model:
// - in process: the run controller pauses the loop between steps (a checkpoint written, the run
//   marked paused, no step taken until resume), stops it with a checkpoint, and a resumed run
//   goes on in the same row; the rows agree with the loop's metrics and rollouts, and the
//   contract's run channels read them;
// - `aha train grpo --dataset ID|NAME`: a dataset of the database trained on and the run recorded
//   there, with a progress bar on a terminal and plain lines without one; SIGTERM stops after the
//   step with a checkpoint and exit 0, --resume finishes the same run; unknown ids are refused
//   before anything is recorded; `aha train sft --dataset` learns a dataset's worked solutions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { dispatch } from '../../src-main/contract/api.ts';
import { openDatabase } from '../../src-main/db/index.ts';
import { setItemSplits, itemIds } from '../../src-main/db/datasets.ts';
import { getRun, listRunMetrics, listRunRollouts, listRuns } from '../../src-main/db/runs.ts';
import { openModel } from '../../src-main/engine/open.ts';
import { generateDataset } from '../../src-main/services/datasets/generators.ts';
import { graderFromConfig } from '../../src-main/services/graders/config.ts';
import { workbenchHandlers } from '../../src-main/services/workbench.ts';
import { RunController } from '../../src-main/train/control.ts';
import { GRPO_DEFAULTS, runGrpo, type GrpoRollout, type GrpoRunConfig, type GrpoStepMetrics } from '../../src-main/train/grpo-run.ts';
import { grpoStepRow, RunRecorder, sampleRollouts } from '../../src-main/train/record.ts';
import { SFT_DEFAULTS } from '../../src-main/train/sft-run.ts';
import { aha, root, testEnv } from './helpers.ts';

const model = join(root, 'tests/fixtures/generated/qwen2-tiny');
const cli = join(root, 'bin/aha.mjs');

// Share of ASCII letters in the completion: varies from sample to sample of a random model.
const letters = {
  name: 'letters',
  grade: ({ completion }: { completion: string }) => {
    const n = [...completion].length;
    return { score: n ? [...completion].filter((c) => /[A-Za-z]/.test(c)).length / n : 0, explanation: 'share of ASCII letters' };
  },
};

test('pause, resume and stop a GRPO run in process; the rows in the database agree with the loop', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-runs-'));
  const db = openDatabase(join(dir, 'aha.db'));
  const m = await openModel(model, { threads: 2, context: 128 });
  const dataText = ['What is 2 + 3?', 'What is 4 + 4?', 'What is 9 - 1?'].map((prompt, i) => JSON.stringify({ prompt, reference: String([5, 8, 8][i]) })).join('\n') + '\n';
  const config: GrpoRunConfig = {
    ...GRPO_DEFAULTS, numGenerations: 4, promptsPerStep: 2, maxCompletionTokens: 4, lr: 1e-2, seed: 3,
    steps: 3, rank: 4, alpha: 8, targets: SFT_DEFAULTS.targets, weightDecay: 0, maxGradNorm: 1,
  };
  const graders = [
    { grader: letters, weight: 2 },
    { grader: graderFromConfig({ name: 'math', version: 1, kind: 'math' }), weight: 0.5 },
  ];
  const out = join(dir, 'out');
  const seen: { metrics: GrpoStepMetrics; rollouts: GrpoRollout[] }[] = [];
  const session = (resume: boolean, steps: number, onStep: (step: number, control: RunController) => void, paused?: () => void) => {
    const recorder = RunRecorder.begin(db, { kind: 'grpo', model, dataset: 'prompts', config: { ...config, steps }, outDir: out }, { resume, warn: (w) => assert.fail(w) });
    const control = new RunController({ paused: () => (recorder.paused(), paused?.()), resumed: () => recorder.resumed() });
    const run = runGrpo({
      model: m.model, modelPath: model, tokenizer: m.tokenizer, template: m.template, graders, dataFile: 'prompts', dataText, out,
      config: { ...config, steps }, given: [], resume, checkpointEvery: 0, control,
      events: {
        warn: (w) => assert.fail(w),
        start: (step, total) => recorder.start(step, total),
        step: (metrics, rollouts) => {
          seen.push({ metrics, rollouts });
          recorder.step(grpoStepRow(metrics), sampleRollouts(rollouts, config.numGenerations, 1));
          onStep(metrics.step, control);
        },
        checkpoint: () => {},
      },
    });
    return { recorder, control, run };
  };
  try {
    // Paused after step 1: a checkpoint, the run marked paused, and no step 2 until resume().
    let markPaused!: () => void;
    const pausedNow = new Promise<void>((resolve) => (markPaused = resolve));
    const first = session(false, 3, (step, control) => (step === 1 ? control.pause() : step === 2 ? control.stop() : undefined), () => markPaused());
    await pausedNow;
    const id = first.recorder.runId;
    assert.equal(getRun(db, id)!.status, 'paused');
    assert.ok(existsSync(join(out, 'checkpoints/step-000001/trainer_state.json')), 'a checkpoint before the pause');
    await sleep(300);
    assert.equal(seen.length, 1, 'no step while paused');
    assert.equal(first.control.state, 'paused');
    first.control.resume();
    // Stopped after step 2: a checkpoint to resume from.
    const stopped = await first.run;
    first.recorder.end(stopped.stoppedAt ? 'stopped' : 'done');
    assert.equal(stopped.steps, 2);
    assert.equal(stopped.stoppedAt, join(out, 'checkpoints/step-000002'));
    assert.ok(!existsSync(join(out, 'adapter_model.safetensors')), 'no final adapter yet');
    let run = getRun(db, id)!;
    assert.deepEqual([run.status, run.step, run.totalSteps, run.kind, run.outDir], ['stopped', 2, 3, 'grpo', out]);
    assert.ok(run.endedAt! >= run.startedAt);

    // Resumed in the same row, to the end.
    const second = session(true, 3, () => {});
    const done = await second.run;
    second.recorder.end('done');
    assert.equal(second.recorder.runId, id);
    assert.deepEqual([done.steps, done.resumedFrom], [3, join(out, 'checkpoints/step-000002')]);
    run = getRun(db, id)!;
    assert.deepEqual([run.status, run.step, run.error], ['done', 3, null]);
    assert.equal(listRuns(db).length, 1);

    // The rows are the loop's metrics and rollouts.
    const metrics = listRunMetrics(db, id);
    assert.deepEqual(metrics.map((s) => s.step), [1, 2, 3]);
    for (const [i, s] of metrics.entries()) {
      const { metrics: want } = seen[i];
      assert.deepEqual(s, { ...grpoStepRow(want), kl: null, clipLowMin: Number.isFinite(want.clipRatio.lowMin) ? want.clipRatio.lowMin : null, clipHighMax: Number.isFinite(want.clipRatio.highMax) ? want.clipRatio.highMax : null });
      assert.deepEqual(Object.keys(s.rewards!).sort(), ['letters', 'math']);
      for (const k of ['rewardMean', 'rewardStd', 'fracRewardZeroStd', 'completionLengthMean', 'completionClippedShare', 'entropy', 'gradNorm', 'rolloutTokensPerSecond', 'rolloutSeconds', 'gradingSeconds', 'forwardBackwardSeconds', 'forwardSeconds', 'backwardSeconds', 'optimizerSeconds'] as const)
        assert.ok(typeof s[k] === 'number' && Number.isFinite(s[k]), `${k} of step ${s.step}: ${s[k]}`);
      assert.equal(s.scoringSeconds, 0, 'beta 0: no reference pass');
    }
    const { rollouts, total } = listRunRollouts(db, id, { limit: 100 });
    assert.equal(total, 3 * 4, 'one group of G a step');
    for (const r of rollouts) {
      const want = seen[r.step - 1].rollouts[r.position];
      assert.deepEqual([r.prompt, r.completion, r.completionIds, r.reward, r.advantage, r.logprobs, r.truncated], [want.prompt, want.completion, want.completionTokens, want.reward, want.advantage, want.logprobs, want.truncated]);
      assert.equal(r.logprobs.length, r.completionIds.length);
      assert.ok(Math.abs(r.reward - (2 * r.scores.letters + 0.5 * r.scores.math)) < 1e-12);
      assert.equal(r.explanations.letters, 'share of ASCII letters');
    }

    // The contract's run channels read the same rows.
    const handlers = workbenchHandlers(db) as Parameters<typeof dispatch>[0];
    const call = async (channel: string, payload: unknown) => {
      const r = await dispatch(handlers, channel, payload);
      if (r.error) throw Object.assign(new Error(r.error.message), { code: r.error.code });
      return r.result as any;
    };
    assert.deepEqual((await call('runs.list', {})).map((r: any) => [r.id, r.status, r.step]), [[id, 'done', 3]]);
    assert.deepEqual(await call('runs.metrics', { id, afterStep: 1 }), metrics.slice(1));
    const page = await call('runs.rollouts', { id, step: 2, limit: 3 });
    assert.deepEqual([page.total, page.rollouts.map((r: any) => r.position)], [4, [0, 1, 2]]);
    await assert.rejects(call('runs.metrics', { id: id + 1 }), (e: any) => e.code === 'not_found' && /no run/.test(e.message));
  } finally {
    await m.model.unload();
    db.close();
  }
});

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

test('aha train grpo|sft --dataset ID|NAME: recorded in that database; a bar on a terminal; SIGTERM stops, --resume finishes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-dataset-'));
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir);
  const db = openDatabase(join(dataDir, 'aha.db'));
  const arith = generateDataset(db, { generator: 'arithmetic', count: 12, seed: 4 }, 'arith');
  const ids = itemIds(db, arith.id);
  setItemSplits(db, arith.id, new Map(ids.map((id, i) => [id, i < 2 ? 'eval' : 'train'])));
  const evalOnly = generateDataset(db, { generator: 'arithmetic', count: 2, seed: 5 }, 'held-out');
  setItemSplits(db, evalOnly.id, new Map(itemIds(db, evalOnly.id).map((id) => [id, 'eval'])));
  db.close();
  const common = ['--model', model, '--data-dir', dataDir, '--grader', 'math,format:0.5', '--num-generations', '4', '--prompts-per-step', '2', '--max-tokens', '4', '--lr', '1e-2', '--seed', '3', '--threads', '2'];
  const dbFile = join(dataDir, 'aha.db');

  // By name, on a terminal (script(1) gives the command one): the bar, and the run recorded.
  const tty = spawnSync('script', ['-qec', ['node_modules/node/bin/node', cli, 'train', 'grpo', ...common, '--dataset', 'arith', '--out', join(dir, 'a'), '--steps', '2'].map(quote).join(' '), '/dev/null'], { cwd: root, encoding: 'utf8', env: testEnv });
  if (tty.error) process.stderr.write(`skipped the terminal check: script(1) is not available (${tty.error.message})\n`);
  const byName = tty.error ? aha('train', 'grpo', ...common, '--dataset', 'arith', '--out', join(dir, 'a'), '--steps', '2') : { code: tty.status, stdout: tty.stdout, stderr: tty.stdout };
  assert.equal(byName.code, 0, byName.stderr);
  assert.match(byName.stderr, new RegExp(`dataset ${arith.id} "arith": 10 prompts \\(left out: 2 eval items\\)`));
  assert.match(byName.stderr, new RegExp(`recording run 1 in ${dataDir}/aha\\.db`));
  if (!tty.error) assert.match(byName.stderr, /\r\[#{20}\] step 2\/2 · reward \d\.\d{3} · loss -?\d+\.\d{4} · \d+ tok\/s · ETA 0s/);
  read(dbFile, (d) => {
    const [run] = listRuns(d);
    assert.deepEqual([run.id, run.kind, run.status, run.step, run.totalSteps, run.datasetId, run.dataset, run.outDir], [1, 'grpo', 'done', 2, 2, arith.id, `dataset ${arith.id} "arith"`, join(dir, 'a')]);
    assert.deepEqual((run.config as any).graders, [{ name: 'math', weight: 1 }, { name: 'format', weight: 0.5 }]);
    const metrics = listRunMetrics(d, run.id);
    assert.deepEqual(metrics.map((s) => s.step), [1, 2]);
    for (const s of metrics) assert.deepEqual(Object.keys(s.rewards!).sort(), ['format', 'math']);
    const { rollouts, total } = listRunRollouts(d, run.id, { limit: 100 });
    assert.equal(total, 2 * 4);
    assert.ok(rollouts.every((r) => /\?$/.test(r.prompt) && r.completionIds.length <= 4));
  });

  // Unknown ids and datasets with nothing to train on: clear errors, nothing recorded.
  const bad = aha('train', 'grpo', ...common, '--dataset', '999', '--out', join(dir, 'x'));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, new RegExp(`--dataset 999: no such file, and no dataset with that id or name in ${dataDir}/aha\\.db \\(its datasets: .*${arith.id} "arith"`));
  const empty = aha('train', 'grpo', ...common, '--dataset', 'held-out', '--out', join(dir, 'x'));
  assert.equal(empty.code, 1);
  assert.match(empty.stderr, /dataset \d+ "held-out" has no items to train on \(left out: 2 eval items\)/);
  const neither = aha('train', 'grpo', ...common, '--out', join(dir, 'x'));
  assert.equal(neither.code, 2);
  assert.match(neither.stderr, /--dataset FILE\|ID is required/);
  assert.equal(read(dbFile, (d) => listRuns(d).length), 1);

  // By id, with --json: SIGTERM ends the run after the step under way, with a checkpoint, exit 0.
  const args = ['train', 'grpo', ...common, '--dataset', String(arith.id), '--out', join(dir, 'b'), '--steps', '4'];
  const child = spawn(process.execPath, [cli, ...args, '--json'], { cwd: root, env: testEnv });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (/"event":"step"/.test(stdout) && !child.killed) child.kill('SIGTERM');
    });
    child.on('exit', (c) => resolve(c));
  });
  assert.equal(code, 0, stderr);
  const events = stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.deepEqual(events[0], { event: 'run', run_id: 2, database: dbFile, dataset: `dataset ${arith.id} "arith"` });
  const stop = events.at(-1);
  assert.equal(stop.event, 'stopped');
  assert.ok(stop.step >= 1 && stop.step < 4, `stopped at ${stop.step}`);
  assert.equal(stop.checkpoint, join(dir, 'b', 'checkpoints', `step-${String(stop.step).padStart(6, '0')}`));
  assert.match(stderr, new RegExp(`stopped at step ${stop.step}; continue from .* with the same command and --resume`));
  read(dbFile, (d) => assert.deepEqual([getRun(d, 2)!.status, getRun(d, 2)!.step], ['stopped', stop.step]));

  // --resume, no terminal and no --json: plain lines, no bar; the same run goes on to the end.
  const resumed = aha(...args, '--resume');
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.doesNotMatch(resumed.stderr, /\r|\[#/);
  assert.match(resumed.stderr, /^step 4\/4 · reward /m);
  assert.match(resumed.stdout, new RegExp(`trained 4 GRPO steps .* run 2 in ${dataDir}/aha\\.db`));
  read(dbFile, (d) => {
    const run = getRun(d, 2)!;
    assert.deepEqual([run.status, run.step, run.endedAt !== null], ['done', 4, true]);
    assert.deepEqual(listRunMetrics(d, 2).map((s) => s.step), [1, 2, 3, 4]);
    assert.deepEqual([...new Set(listRunRollouts(d, 2, { limit: 100 }).rollouts.map((r) => r.step))], [1, 2, 3, 4]);
    assert.equal(listRuns(d).length, 2);
  });

  // SFT on the same dataset: its worked solutions; SFT metrics, no GRPO ones.
  const sft = aha('train', 'sft', '--model', model, '--data-dir', dataDir, '--dataset', 'arith', '--out', join(dir, 's'), '--batch', '5', '--max-len', '96', '--threads', '2', '--json');
  assert.equal(sft.code, 0, sft.stderr);
  const done = JSON.parse(sft.stdout.trim().split('\n').at(-1)!);
  assert.deepEqual([done.event, done.steps, done.run_id], ['done', 2, 3]);
  read(dbFile, (d) => {
    const run = getRun(d, 3)!;
    assert.deepEqual([run.kind, run.status, run.step, run.totalSteps, run.datasetId], ['sft', 'done', 2, 2, arith.id]);
    for (const s of listRunMetrics(d, 3)) {
      assert.ok(s.epoch! > 0 && s.tokens! > 0 && s.targetTokens! > 0 && s.loss > 0 && s.stepSeconds > 0);
      assert.deepEqual([s.rewardMean, s.rewards, s.entropy, s.rolloutSeconds], [null, null, null, null]);
    }
  });
});

test('aha train sft --data still reads a file, recorded with its path', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-sft-file-'));
  const data = join(dir, 'd.jsonl');
  writeFileSync(data, JSON.stringify({ prompt: 'Hi', completion: 'Hello.' }) + '\n');
  const r = aha('train', 'sft', '--model', model, '--data-dir', join(dir, 'data'), '--data', data, '--out', join(dir, 'o'), '--threads', '2', '--json');
  assert.equal(r.code, 0, r.stderr);
  read(join(dir, 'data', 'aha.db'), (d) => assert.deepEqual(listRuns(d).map((x) => [x.dataset, x.datasetId, x.status]), [[data, null, 'done']]));
  const both = aha('train', 'sft', '--model', model, '--data', data, '--dataset', data, '--out', join(dir, 'o'));
  assert.equal(both.code, 2);
  assert.match(both.stderr, /give --dataset or --data, not both/);
});

/** `f` on the database at `file`, opened for it alone (the command under test writes it between reads). */
function read<T>(file: string, f: (db: ReturnType<typeof openDatabase>) => T): T {
  const d = openDatabase(file);
  try {
    return f(d);
  } finally {
    d.close();
  }
}
