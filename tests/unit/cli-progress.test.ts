// The progress bar of `aha train` (src-main/cli/progress.ts): durations, the line's fields, the
// ETA from this session's mean step time, a note printed above the bar, the terminal's width.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StepProgress, formatDuration, progressLine } from '../../src-main/cli/progress.ts';

test('durations read as seconds, minutes, hours', () => {
  assert.deepEqual([0, 42.4, 59.6, 60, 185, 3600, 3723].map(formatDuration), ['0s', '42s', '1:00', '1:00', '3:05', '1:00:00', '1:02:03']);
});

test('the line: the bar, step N/M, reward (GRPO), loss, tokens/s, ETA', () => {
  assert.equal(
    progressLine({ step: 5, totalSteps: 10, loss: 0.12345, reward: 0.5, tokensPerSecond: 1234.4 }, 75),
    '[##########..........] step 5/10 · reward 0.500 · loss 0.1235 · 1234 tok/s · ETA 1:15',
  );
  assert.equal(progressLine({ step: 0, totalSteps: 4, loss: 2, tokensPerSecond: 10 }, null, 4), '[....] step 0/4 · loss 2.0000 · 10 tok/s · ETA ?');
});

test('the ETA is the mean step time of the session times the steps left; a note goes above the bar', () => {
  const written: string[] = [];
  const term = { write: (s: string) => written.push(s), columns: 200 };
  // A resumed run: the session starts after step 4, at t = 1000 ms.
  const bar = new StepProgress(term, 4, 1000);
  bar.update({ step: 5, totalSteps: 10, loss: 1, tokensPerSecond: 100 }, 3000);
  assert.match(written.at(-1)!, /^\r\[#{10}\.{10}\] step 5\/10 · loss 1\.0000 · 100 tok\/s · ETA 10s\x1b\[K$/);
  bar.update({ step: 6, totalSteps: 10, loss: 1, tokensPerSecond: 100 }, 4000);
  assert.match(written.at(-1)!, /ETA 6s/, '1.5 s a step, 4 steps left');
  bar.note('warning: something');
  assert.match(written.at(-1)!, /^\r\x1b\[Kwarning: something\n\[#{12}\.{8}\] step 6\/10/);
  bar.end();
  assert.equal(written.at(-1), '\n');
  bar.end();
  assert.equal(written.length, 4, 'a bar ended once');
});

test('the line is cut to the terminal\'s width', () => {
  const written: string[] = [];
  const bar = new StepProgress({ write: (s: string) => written.push(s), columns: 30 }, 0, 0);
  bar.update({ step: 1, totalSteps: 2, loss: 1, tokensPerSecond: 1 }, 1000);
  assert.equal(written[0], `\r${'[##########..........] step 1/2'.slice(0, 29)}\x1b[K`);
});
