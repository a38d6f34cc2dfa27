// Training runs in SQLite (migration 0003, db/runs.ts): a run and its steps and rollouts read back
// as written, NaN metrics as null, a step recorded again replaced, status and end time kept
// together by the table, a resumed run dropping the steps after its checkpoint, deletes cascading,
// and a database of schema 2 migrated with its data kept; the trainer's process recorded with the
// run (migration 0004) and a run whose process is gone read as interrupted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDataset, deleteDataset } from '../../src-main/db/datasets.ts';
import { migrate, openDatabase } from '../../src-main/db/index.ts';
import { migrations } from '../../src-main/db/migrations/index.ts';
import {
  createRun,
  deleteRun,
  getRun,
  latestRunIn,
  listRunMetrics,
  listRunRollouts,
  listRuns,
  recordRunStep,
  restartRun,
  setRunStatus,
  setRunTotalSteps,
  type NewRunRollout,
  type RunStepMetrics,
} from '../../src-main/db/runs.ts';
import { currentOwner, ownerAlive, processStart } from '../../src-main/db/owner.ts';
import BetterSqlite3 from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';

const grpoStep = (step: number, over: Partial<RunStepMetrics> = {}): RunStepMetrics => ({
  step,
  loss: 0.1 * step,
  lr: 5e-6,
  gradNorm: 0.5,
  tokensPerSecond: 1000,
  stepSeconds: 2.5,
  epoch: null,
  tokens: null,
  targetTokens: null,
  rewardMean: 0.25,
  rewardStd: 0.5,
  rewards: { math: { mean: 0.25, std: 0.5 }, format: { mean: 1, std: 0 } },
  fracRewardZeroStd: 0.5,
  completionLengthMean: 3.5,
  completionLengthMin: 2,
  completionLengthMax: 4,
  completionClippedShare: 0.25,
  clipLowMean: 0,
  clipHighMean: 0,
  clipRegionMean: 0,
  clipLowMin: 0,
  clipHighMax: 0,
  kl: null,
  entropy: 2.1,
  rolloutTokensPerSecond: 400,
  rolloutSeconds: 1,
  gradingSeconds: 0.01,
  scoringSeconds: 0,
  forwardBackwardSeconds: 1.2,
  forwardSeconds: 0.4,
  backwardSeconds: 0.8,
  optimizerSeconds: 0.05,
  ...over,
});

const rollout = (position: number, over: Partial<NewRunRollout> = {}): NewRunRollout => ({
  position,
  prompt: 'What is 2 + 3?',
  completion: `<think>2 plus 3</think> ${position}`,
  completionIds: [11, 12, position],
  truncated: position % 2 === 1,
  scores: { math: position === 0 ? 1 : 0 },
  explanations: { math: position === 0 ? 'matches 5' : 'no match' },
  reward: position === 0 ? 1 : 0,
  advantage: position === 0 ? 1.5 : -0.5,
  logprobs: [-0.5, -1.25, -2],
  ...over,
});

const newRun = (outDir = '/runs/a', kind: 'sft' | 'grpo' = 'grpo') => ({
  kind,
  model: '/models/tiny',
  dataset: 'dataset 1 "arith"',
  config: { steps: 3, numGenerations: 4, graders: [{ name: 'math', weight: 1 }] },
  outDir,
});

test('a run starts running; its steps and rollouts read back as written, in order', () => {
  const db = openDatabase(':memory:');
  const run = createRun(db, newRun(), 1000);
  assert.deepEqual(run, {
    id: run.id, kind: 'grpo', model: '/models/tiny', dataset: 'dataset 1 "arith"', datasetId: null,
    config: { steps: 3, numGenerations: 4, graders: [{ name: 'math', weight: 1 }] }, status: 'running', outDir: '/runs/a',
    totalSteps: null, step: 0, error: null, startedAt: 1000, endedAt: null, pid: process.pid, host: hostname(),
  });
  setRunTotalSteps(db, run.id, 3);
  recordRunStep(db, run.id, grpoStep(2), [rollout(0), rollout(1)], 3000);
  recordRunStep(db, run.id, grpoStep(1), [rollout(1), rollout(0)], 2000);
  assert.equal(getRun(db, run.id)!.step, 2, 'the last step recorded');
  assert.equal(getRun(db, run.id)!.totalSteps, 3);
  assert.deepEqual(listRunMetrics(db, run.id), [grpoStep(1), grpoStep(2)]);
  assert.deepEqual(listRunMetrics(db, run.id, 1), [grpoStep(2)]);
  const all = listRunRollouts(db, run.id);
  assert.equal(all.total, 4);
  assert.deepEqual(all.rollouts.map((r) => [r.step, r.position]), [[1, 0], [1, 1], [2, 0], [2, 1]]);
  const { id, runId, step, ...stored } = all.rollouts[0];
  assert.deepEqual([runId, step], [run.id, 1]);
  assert.ok(id > 0);
  assert.deepEqual(stored, rollout(0));
  const page = listRunRollouts(db, run.id, { step: 2, offset: 1, limit: 5 });
  assert.deepEqual([page.total, page.rollouts.length, page.rollouts[0].position], [2, 1, 1]);
  assert.deepEqual(listRunRollouts(db, run.id, { step: 9 }), { rollouts: [], total: 0 });
  db.close();
});

test('SFT steps leave the GRPO metrics null; NaN is stored as null; a step recorded again is replaced', () => {
  const db = openDatabase(':memory:');
  const run = createRun(db, newRun('/runs/s', 'sft'));
  const sft = grpoStep(1, {
    epoch: 0.5, tokens: 120, targetTokens: 40, rewardMean: null, rewardStd: null, rewards: null, fracRewardZeroStd: null, completionLengthMean: null,
    completionLengthMin: null, completionLengthMax: null, completionClippedShare: null, clipLowMean: null, clipHighMean: null, clipRegionMean: null,
    clipLowMin: null, clipHighMax: null, entropy: null, rolloutTokensPerSecond: null, rolloutSeconds: null, gradingSeconds: null, scoringSeconds: null,
    forwardBackwardSeconds: null, forwardSeconds: null, backwardSeconds: null, optimizerSeconds: null,
  });
  recordRunStep(db, run.id, sft);
  assert.deepEqual(listRunMetrics(db, run.id), [sft]);
  const grpo = createRun(db, newRun('/runs/g'));
  recordRunStep(db, grpo.id, grpoStep(1, { clipLowMin: Number.NaN, kl: Number.POSITIVE_INFINITY }), [rollout(0), rollout(1)]);
  assert.deepEqual(listRunMetrics(db, grpo.id), [grpoStep(1, { clipLowMin: null, kl: null })]);
  recordRunStep(db, grpo.id, grpoStep(1, { loss: 7 }), [rollout(0, { reward: 0.75 })]);
  assert.deepEqual(listRunMetrics(db, grpo.id).map((m) => m.loss), [7]);
  assert.deepEqual(listRunRollouts(db, grpo.id).rollouts.map((r) => r.reward), [0.75], 'the step\'s old rollouts are gone');
  db.close();
});

test('status and end time go together; an error only with failed; the table refuses the rest', () => {
  const db = openDatabase(':memory:');
  const { id } = createRun(db, newRun(), 1000);
  setRunStatus(db, id, 'paused', null, 2000);
  assert.deepEqual([getRun(db, id)!.status, getRun(db, id)!.endedAt], ['paused', null]);
  setRunStatus(db, id, 'stopped', 'ignored', 3000);
  assert.deepEqual([getRun(db, id)!.status, getRun(db, id)!.endedAt, getRun(db, id)!.error], ['stopped', 3000, null]);
  setRunStatus(db, id, 'failed', 'loss is NaN', 4000);
  assert.deepEqual([getRun(db, id)!.status, getRun(db, id)!.endedAt, getRun(db, id)!.error], ['failed', 4000, 'loss is NaN']);
  const put = db.prepare('UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?');
  assert.throws(() => put.run('running', 5, null, id), /CHECK constraint failed/, 'a running run has no end');
  assert.throws(() => put.run('done', null, null, id), /CHECK constraint failed/, 'an ended run has an end');
  assert.throws(() => put.run('done', 5, 'why', id), /CHECK constraint failed/, 'an error only with failed');
  assert.throws(() => put.run('finished', 5, null, id), /CHECK constraint failed/);
  assert.throws(() => db.prepare("UPDATE runs SET config = '[]' WHERE id = ?").run(id), /CHECK constraint failed/);
  assert.throws(() => recordRunStep(db, id, grpoStep(0)), /CHECK constraint failed/, 'steps count from 1');
  db.close();
});

test('a resumed run is found by its folder and kind, and drops the steps after its checkpoint', () => {
  const db = openDatabase(':memory:');
  const old = createRun(db, newRun('/runs/a'), 1000);
  const run = createRun(db, newRun('/runs/a'), 2000);
  createRun(db, newRun('/runs/a', 'sft'), 3000);
  createRun(db, newRun('/runs/b'), 4000);
  assert.equal(latestRunIn(db, '/runs/a', 'grpo')!.id, run.id);
  assert.equal(latestRunIn(db, '/runs/c', 'grpo'), undefined);
  assert.deepEqual(listRuns(db).map((r) => r.startedAt), [4000, 3000, 2000, 1000]);
  for (const s of [1, 2, 3]) recordRunStep(db, run.id, grpoStep(s), [rollout(0)]);
  setRunStatus(db, run.id, 'failed', 'killed', 5000);
  const again = restartRun(db, run.id, 2, { steps: 6 })!;
  assert.deepEqual([again.status, again.endedAt, again.error, again.step, again.config], ['running', null, null, 2, { steps: 6 }]);
  assert.deepEqual(listRunMetrics(db, run.id).map((m) => m.step), [1, 2]);
  assert.deepEqual(listRunRollouts(db, run.id).rollouts.map((r) => r.step), [1, 2]);
  assert.equal(restartRun(db, 999, 0, {}), undefined);
  assert.equal(getRun(db, old.id)!.step, 0, 'other runs untouched');
  db.close();
});

test('deleting a run deletes its steps and rollouts; deleting its dataset keeps the run', () => {
  const db = openDatabase(':memory:');
  const d = createDataset(db, { name: 'arith', kind: 'math', source: 'generator:arithmetic' });
  const run = createRun(db, { ...newRun(), datasetId: d.id });
  recordRunStep(db, run.id, grpoStep(1), [rollout(0)]);
  assert.equal(getRun(db, run.id)!.datasetId, d.id);
  deleteDataset(db, d.id);
  assert.equal(getRun(db, run.id)!.datasetId, null);
  assert.equal(getRun(db, run.id)!.dataset, 'dataset 1 "arith"', 'the label stays');
  assert.ok(deleteRun(db, run.id));
  assert.equal(deleteRun(db, run.id), false);
  assert.equal((db.prepare('SELECT count(*) AS n FROM run_metrics').get() as { n: number }).n, 0);
  assert.equal((db.prepare('SELECT count(*) AS n FROM run_rollouts').get() as { n: number }).n, 0);
  db.close();
});

test('a database of schema 2 gains the run tables and keeps its data', () => {
  const db = new BetterSqlite3(':memory:');
  db.pragma('foreign_keys = ON');
  migrate(db, migrations.slice(0, 2));
  const d = createDataset(db, { name: 'kept', kind: 'math', source: 'file.jsonl' });
  migrate(db, migrations.slice(0, 3));
  assert.equal(db.pragma('user_version', { simple: true }), 3);
  assert.equal(migrations[2].name, 'runs');
  assert.equal((db.prepare('SELECT name FROM datasets WHERE id = ?').get(d.id) as { name: string }).name, 'kept');
  const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'run%' ORDER BY name").pluck().all();
  assert.deepEqual(tables, ['run_metrics', 'run_rollouts', 'runs']);
  migrate(db, migrations);
  assert.equal(createRun(db, newRun()).status, 'running');
  db.close();
});

test('a database of schema 3 gains the runs\' owner; a run recorded before reads as it was stored', () => {
  const db = new BetterSqlite3(':memory:');
  db.pragma('foreign_keys = ON');
  migrate(db, migrations.slice(0, 3));
  db.prepare(
    `INSERT INTO runs (kind, model, dataset, config, status, out_dir, started_at) VALUES ('sft', '/m', 'd.jsonl', '{}', 'running', '/runs/old', 5)`,
  ).run();
  migrate(db, migrations.slice(0, 4));
  assert.equal(db.pragma('user_version', { simple: true }), 4);
  assert.equal(migrations[3].name, 'run-owner');
  const [old] = listRuns(db, () => false);
  assert.deepEqual([old.status, old.pid, old.host, old.error], ['running', null, null, null], 'no owner known: nothing to check');
  // The columns go together: a host with a pid, a start identity only with a pid.
  assert.throws(() => db.prepare('UPDATE runs SET host = ? WHERE id = ?').run('h', old.id), /CHECK constraint failed/);
  assert.throws(() => db.prepare('UPDATE runs SET pid = 0, host = ? WHERE id = ?').run('h', old.id), /CHECK constraint failed/);
  assert.throws(() => db.prepare('UPDATE runs SET process_start = ? WHERE id = ?').run('b:1', old.id), /CHECK constraint failed/);
  db.close();
});

test('schema 5 times the policy\'s forward and backward apart; steps recorded before read them as null', () => {
  const db = new BetterSqlite3(':memory:');
  db.pragma('foreign_keys = ON');
  migrate(db, migrations.slice(0, 4));
  const run = createRun(db, newRun());
  db.prepare('INSERT INTO run_metrics (run_id, step, loss, lr, grad_norm, tokens_per_s, step_s, recorded_at) VALUES (?, 1, 0.5, 1e-5, 1, 100, 2, 7)').run(run.id);
  migrate(db, migrations);
  assert.equal(db.pragma('user_version', { simple: true }), 5);
  const [old] = listRunMetrics(db, run.id);
  assert.deepEqual([old.forwardBackwardSeconds, old.forwardSeconds, old.backwardSeconds], [null, null, null]);
  recordRunStep(db, run.id, grpoStep(2));
  const fresh = listRunMetrics(db, run.id).find((m) => m.step === 2)!;
  assert.deepEqual([fresh.forwardSeconds, fresh.backwardSeconds], [0.4, 0.8]);
  assert.throws(() => db.prepare('UPDATE run_metrics SET backward_s = -1 WHERE step = 2').run(), /CHECK constraint failed/);
  db.close();
});

test('a run left running or paused by a process that is gone reads as interrupted; the row keeps what the trainer wrote', () => {
  const db = openDatabase(':memory:');
  const owner = { pid: 4242, host: 'box', start: 'boot:77' };
  const running = createRun(db, { ...newRun('/runs/r'), owner }, 1000);
  recordRunStep(db, running.id, grpoStep(1), [], 2000);
  recordRunStep(db, running.id, grpoStep(2), [], 3000);
  const paused = createRun(db, { ...newRun('/runs/p'), owner }, 1000);
  setRunStatus(db, paused.id, 'paused');
  const done = createRun(db, { ...newRun('/runs/d'), owner }, 1000);
  setRunStatus(db, done.id, 'done', null, 4000);
  const unknown = createRun(db, { ...newRun('/runs/u'), owner: null }, 1000);
  const seen: unknown[] = [];
  const gone = (o: { pid: number; host: string; start: string | null }) => (seen.push(o), false);

  const r = getRun(db, running.id, gone)!;
  assert.equal(r.status, 'interrupted');
  assert.equal(r.error, 'the trainer process (pid 4242) is gone without recording an end, after step 2; continue it with the same command and --resume');
  assert.equal(r.endedAt, 3000, 'its last sign of life: the last step recorded');
  assert.deepEqual([r.pid, r.host], [4242, 'box']);
  assert.deepEqual(seen, [owner], 'the check is given the owner as recorded');
  assert.equal(getRun(db, paused.id, gone)!.status, 'interrupted');
  assert.equal(getRun(db, paused.id, gone)!.endedAt, 1000, 'no step: its start');
  assert.equal(getRun(db, done.id, gone)!.status, 'done', 'an ended run is not checked');
  assert.equal(getRun(db, unknown.id, gone)!.status, 'running', 'no owner recorded: as stored');
  assert.deepEqual(listRuns(db, gone).map((x) => x.status).sort(), ['done', 'interrupted', 'interrupted', 'running']);
  assert.equal(latestRunIn(db, '/runs/r', 'grpo', gone)!.status, 'interrupted');
  // Alive, or on another machine (cannot tell): as stored.
  assert.equal(getRun(db, running.id, () => true)!.status, 'running');
  assert.equal(getRun(db, running.id, () => null)!.status, 'running');
  assert.equal((db.prepare('SELECT status FROM runs WHERE id = ?').get(running.id) as { status: string }).status, 'running', 'reading writes nothing');

  // --resume takes the row over with the resuming process.
  const next = { pid: 5151, host: 'box', start: 'boot:99' };
  restartRun(db, running.id, 1, {}, next);
  const alive = (o: { pid: number }) => o.pid === 5151;
  assert.deepEqual([getRun(db, running.id, alive)!.status, getRun(db, running.id, alive)!.pid, getRun(db, running.id, alive)!.error], ['running', 5151, null]);
  db.close();
});

test('owner checks on this machine: this process lives; a process that exited is gone; a reused pid is not the owner; another host cannot be told', async () => {
  const me = currentOwner();
  assert.equal(me.pid, process.pid);
  assert.equal(me.host, hostname());
  if (process.platform === 'linux') assert.match(me.start ?? '', /^[0-9a-f-]+:\d+$/);
  assert.equal(ownerAlive(me), true);
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  await new Promise((resolve) => child.once('spawn', resolve));
  const owner = { pid: child.pid!, host: hostname(), start: processStart(child.pid!) };
  assert.equal(ownerAlive(owner), true);
  if (process.platform === 'linux') assert.equal(ownerAlive({ ...owner, start: `${owner.start!.split(':')[0]}:1` }), false, 'the same pid, started at another time: another process');
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  assert.equal(ownerAlive(owner), false);
  assert.equal(ownerAlive({ ...owner, host: `not-${hostname()}` }), null);
});
