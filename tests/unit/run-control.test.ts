// The run controller (src-main/train/control.ts) as a loop sees it between two steps: running
// goes on at once; a pause waits until resume() or stop(), with its events; a stop ends the loop,
// from a pause too; a pause after a stop is ignored.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RunController } from '../../src-main/train/control.ts';

/** Whether the promise settles within `ms` (and with what). */
async function within<T>(p: Promise<T>, ms: number): Promise<{ value: T } | 'pending'> {
  return Promise.race([p.then((value) => ({ value })), sleep(ms).then(() => 'pending' as const)]);
}

test('a running loop goes on at once', async () => {
  const c = new RunController();
  assert.equal(c.state, 'running');
  assert.equal(c.holding, false);
  assert.equal(await c.between(), false);
});

test('a pause waits between steps until resume(), with its events', async () => {
  const events: string[] = [];
  const c = new RunController({ paused: () => events.push('paused'), resumed: () => events.push('resumed') });
  c.pause();
  assert.equal(c.state, 'pausing');
  assert.equal(c.holding, true, 'the loop writes a checkpoint before it waits');
  const waiting = c.between();
  assert.equal(await within(waiting, 50), 'pending');
  assert.equal(c.state, 'paused');
  assert.deepEqual(events, ['paused']);
  c.pause();
  assert.equal(await within(waiting, 20), 'pending', 'pausing again changes nothing');
  c.resume();
  assert.deepEqual(await within(waiting, 50), { value: false });
  assert.deepEqual(events, ['paused', 'resumed']);
  assert.equal(c.state, 'running');
  assert.equal(c.holding, false);
  assert.equal(await c.between(), false, 'the next step goes on');
});

test('stop() ends a paused loop without a resume event, and a running one after its step', async () => {
  const events: string[] = [];
  const c = new RunController({ paused: () => events.push('paused'), resumed: () => events.push('resumed') });
  c.pause();
  const waiting = c.between();
  await sleep(10);
  c.stop();
  assert.deepEqual(await within(waiting, 50), { value: true });
  assert.deepEqual(events, ['paused']);
  assert.equal(c.state, 'stopping');

  const d = new RunController();
  d.stop();
  d.pause();
  assert.equal(d.state, 'stopping', 'a pause after a stop is ignored');
  assert.equal(d.holding, true);
  assert.deepEqual(await within(d.between(), 50), { value: true });
});

test('resume() before the loop reaches its pause cancels the pause', async () => {
  const events: string[] = [];
  const c = new RunController({ paused: () => events.push('paused') });
  c.pause();
  c.resume();
  assert.equal(await c.between(), false);
  assert.deepEqual(events, []);
});
