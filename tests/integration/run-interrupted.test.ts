// A trainer killed outright (SIGKILL: no chance to record how its run ended) leaves its run's row
// 'running'; the readers (db/runs.ts, the app's run channels) see that the process it names is gone
// and show the run interrupted, saying how to go on. `--resume` then takes the same row over with
// its own process and finishes it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../../src-main/db/index.ts';
import { getRun, listRuns, type Run } from '../../src-main/db/runs.ts';
import { workbenchHandlers } from '../../src-main/services/workbench.ts';
import { aha, dataset, killAtCheckpoint, lines, root } from './helpers.ts';

test('a trainer killed with SIGKILL leaves its run interrupted, not running; --resume continues the same run to its end', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-run-killed-'));
  const dataDir = join(dir, 'data');
  const data = dataset(Array.from({ length: 8 }, (_, i) => ({ prompt: `Question number ${i}?`, completion: `Answer ${i * 7}.` })));
  const args = ['train', 'sft', '--model', join(root, 'tests/fixtures/generated/qwen2-tiny'), '--data', data, '--out', join(dir, 'out'), '--lr', '5e-3',
    '--epochs', '5', '--batch', '2', '--grad-accum', '2', '--checkpoint-every', '3', '--data-dir', dataDir, '--threads', '2', '--json'];

  const k = await killAtCheckpoint(args, 3);
  assert.equal(k.signal, 'SIGKILL');
  const started = lines(k.stdout).find((l) => l.event === 'run') as unknown as { run_id: number; database: string };
  assert.equal(started.database, join(dataDir, 'aha.db'));

  const db = openDatabase(started.database);
  try {
    // The row is as the killed trainer left it: running, with its process.
    const row = db.prepare('SELECT status, pid FROM runs WHERE id = ?').get(started.run_id) as { status: string; pid: number };
    assert.equal(row.status, 'running');
    assert.ok(row.pid > 0 && row.pid !== process.pid);
    // Read, it is interrupted.
    const check = (r: Run | undefined) => {
      assert.ok(r);
      assert.equal(r.status, 'interrupted');
      assert.equal(r.pid, row.pid);
      assert.ok(r.step >= 3 && r.step < 10, `killed after step ${r.step}`);
      assert.equal(r.error, `the trainer process (pid ${row.pid}) is gone without recording an end, after step ${r.step}; continue it with the same command and --resume`);
      assert.ok(r.endedAt !== null && r.endedAt >= r.startedAt);
    };
    check(getRun(db, started.run_id));
    check(listRuns(db).find((r) => r.id === started.run_id));
    const handlers = workbenchHandlers(db);
    check(await handlers['runs.get']({ id: started.run_id }));
    check((await handlers['runs.list']({})).find((r) => r.id === started.run_id));

    const resumed = aha(...args, '--resume');
    assert.equal(resumed.code, 0, resumed.stderr);
    const done = lines(resumed.stdout).at(-1) as unknown as { event: string; run_id: number };
    assert.deepEqual([done.event, done.run_id], ['done', started.run_id], 'the same run goes on');
    const after = getRun(db, started.run_id)!;
    assert.deepEqual([after.status, after.step, after.error], ['done', 10, null]);
    assert.notEqual(after.pid, row.pid, 'the resuming process took the row over');
  } finally {
    db.close();
  }
});
