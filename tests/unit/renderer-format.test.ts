// How figures read in the UI, the thinking block's summary line above all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dayGroup, formatBytes, formatParameters, thinkingSummary, tokensPerSecond } from '../../src-renderer/lib/format.ts';

test('thinking summary: live while reasoning, then time and tokens', () => {
  assert.equal(thinkingSummary(true, 0, 0), 'Thinking…');
  assert.equal(thinkingSummary(true, 1200, 57), 'Thinking… 57 tokens');
  assert.equal(thinkingSummary(false, 12_340, 340), 'Thought for 12 s · 340 tokens');
  assert.equal(thinkingSummary(false, 200, 1), 'Thought for 1 s · 1 token');
  assert.equal(thinkingSummary(false, 75_000, 2048), 'Thought for 75 s · 2048 tokens');
});

test('sizes and parameter counts', () => {
  assert.equal(formatBytes(1.12e9), '1.12 GB');
  assert.equal(formatBytes(16.1e9), '16.1 GB');
  assert.equal(formatBytes(117e6), '117 MB');
  assert.equal(formatBytes(0), '—');
  assert.equal(formatParameters(1.78e9), '1.78B');
  assert.equal(formatParameters(671e9), '671B');
  assert.equal(formatParameters(135e6), '135M');
});

test('speed needs something to measure', () => {
  assert.equal(tokensPerSecond(100, 4000), '25.0 tok/s');
  assert.equal(tokensPerSecond(1, 4000), '');
  assert.equal(tokensPerSecond(100, 0), '');
});

test('sidebar day groups', () => {
  const now = new Date(2025, 5, 15, 14, 0).getTime();
  assert.equal(dayGroup(new Date(2025, 5, 15, 0, 5).getTime(), now), 'Today');
  assert.equal(dayGroup(new Date(2025, 5, 14, 23, 0).getTime(), now), 'Yesterday');
  assert.equal(dayGroup(new Date(2025, 5, 10).getTime(), now), 'Previous 7 days');
  assert.equal(dayGroup(new Date(2025, 4, 20).getTime(), now), 'Previous 30 days');
  assert.equal(dayGroup(new Date(2024, 11, 1).getTime(), now), 'December 2024');
});
