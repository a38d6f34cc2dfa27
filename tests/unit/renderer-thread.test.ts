// The conversation tree on screen: the thread is the path to the leaf, siblings are the other
// answers or edits under the same parent, switching branches lands on the latest leaf under the
// chosen sibling, and streamed deltas grow a message and its reasoning figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Message } from '../../src-main/contract/api.ts';
import { applyDelta, buildThread, latestLeaf, type LiveAnswer } from '../../src-renderer/lib/thread.ts';

function msg(id: number, parentId: number | null, role: Message['role'], createdAt = id): Message {
  return {
    id, conversationId: 1, parentId, role, content: `m${id}`, reasoning: '', status: 'done', error: null, modelId: 1,
    promptTokens: 0, completionTokens: 0, reasoningTokens: 0, reasoningMs: 0, totalMs: 0, createdAt,
  };
}

// 1 user ─┬─ 2 assistant ── 3 user ── 4 assistant
//         ├─ 5 assistant (regenerated)
//         └─ 6 assistant (regenerated) ── 7 user ── 8 assistant
// 9 user (the first message edited) ── 10 assistant
const tree = new Map(
  [msg(1, null, 'user'), msg(2, 1, 'assistant'), msg(3, 2, 'user'), msg(4, 3, 'assistant'), msg(5, 1, 'assistant'),
    msg(6, 1, 'assistant'), msg(7, 6, 'user'), msg(8, 7, 'assistant'), msg(9, null, 'user'), msg(10, 9, 'assistant')].map((m) => [m.id, m]),
);

test('the thread is the path from the root to the leaf, with each message among its siblings', () => {
  const thread = buildThread(tree, 4);
  assert.deepEqual(thread.map((e) => e.message.id), [1, 2, 3, 4]);
  assert.deepEqual(thread[0].siblings, [1, 9], 'roots are siblings too (an edited first message)');
  assert.equal(thread[0].index, 0);
  assert.deepEqual(thread[1].siblings, [2, 5, 6]);
  assert.equal(thread[1].index, 0);
  assert.deepEqual(thread[2].siblings, [3]);
  assert.equal(buildThread(tree, 8)[1].index, 2);
});

test('an unknown or absent leaf gives an empty thread', () => {
  assert.deepEqual(buildThread(tree, null), []);
  assert.deepEqual(buildThread(tree, 999), []);
});

test('a cycle in bad data does not loop forever', () => {
  const a = msg(1, 2, 'user');
  const b = msg(2, 1, 'assistant');
  assert.equal(buildThread(new Map([[1, a], [2, b]]), 2).length, 2);
});

test('siblings are ordered by creation time, then id', () => {
  const t = new Map([msg(1, null, 'user'), msg(3, 1, 'assistant', 5), msg(2, 1, 'assistant', 9)].map((m) => [m.id, m]));
  assert.deepEqual(buildThread(t, 2)[1].siblings, [3, 2]);
});

test('switching to a sibling shows the latest leaf under it', () => {
  assert.equal(latestLeaf(tree, 2), 4);
  assert.equal(latestLeaf(tree, 5), 5, 'a leaf is its own latest leaf');
  assert.equal(latestLeaf(tree, 6), 8);
  assert.equal(latestLeaf(tree, 1), 8, 'the most recently created leaf in the subtree');
  const later = new Map(tree);
  later.set(11, msg(11, 2, 'user', 100));
  assert.equal(latestLeaf(later, 2), 11, 'a branch added later under 2 wins over the older 4');
});

test('deltas grow reasoning then content; the reasoning figures follow until it closes', () => {
  const m = { ...msg(20, 1, 'assistant'), content: '', status: 'streaming' as const };
  const live: LiveAnswer = { thinking: false, startedAt: 1000 };
  const d = (reasoning: string, content: string, thinking: boolean, completionTokens: number) =>
    ({ conversationId: 1, messageId: 20, reasoning, content, thinking, completionTokens });
  applyDelta(m, live, d('Let me', '', true, 2), 1500);
  applyDelta(m, live, d(' think.', '', true, 4), 3000);
  assert.equal(m.reasoning, 'Let me think.');
  assert.equal(live.thinking, true);
  assert.equal(m.reasoningTokens, 4);
  assert.equal(m.reasoningMs, 2000);
  applyDelta(m, live, d('', 'The answer', false, 6), 3500);
  assert.equal(live.thinking, false);
  assert.equal(m.reasoningTokens, 6, 'frozen when reasoning closes');
  assert.equal(m.reasoningMs, 2500);
  applyDelta(m, live, d('', ' is 3.', false, 9), 9000);
  assert.equal(m.content, 'The answer is 3.');
  assert.equal(m.completionTokens, 9);
  assert.equal(m.reasoningTokens, 6);
  assert.equal(m.reasoningMs, 2500);
});
