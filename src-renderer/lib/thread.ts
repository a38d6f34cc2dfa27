// A conversation's messages form a tree (parentId): regenerations and edits are siblings under
// one parent. The thread on screen is the path from the root to the conversation's leaf.
import type { EventOf, Message } from '../../src-main/contract/api.ts';

/** Older first; ids break ties between messages created in the same millisecond. */
const byAge = (a: Message, b: Message) => a.createdAt - b.createdAt || a.id - b.id;

export interface ThreadEntry {
  message: Message;
  /** Ids of the message and its siblings (same parent), oldest first. */
  siblings: number[];
  /** The message's place among them, from 0. */
  index: number;
}

function childrenOf(messages: Iterable<Message>): Map<number | null, Message[]> {
  const children = new Map<number | null, Message[]>();
  for (const m of messages) {
    const list = children.get(m.parentId);
    if (list) list.push(m);
    else children.set(m.parentId, [m]);
  }
  for (const list of children.values()) list.sort(byAge);
  return children;
}

/** The thread ending at `leafId`, root first; empty when the leaf is unknown. */
export function buildThread(messages: ReadonlyMap<number, Message>, leafId: number | null): ThreadEntry[] {
  const children = childrenOf(messages.values());
  const path: Message[] = [];
  const seen = new Set<number>();
  for (let m = leafId === null ? undefined : messages.get(leafId); m && !seen.has(m.id); m = m.parentId === null ? undefined : messages.get(m.parentId)) {
    seen.add(m.id);
    path.push(m);
  }
  path.reverse();
  return path.map((message) => {
    const siblings = (children.get(message.parentId) ?? [message]).map((s) => s.id);
    return { message, siblings, index: Math.max(0, siblings.indexOf(message.id)) };
  });
}

/**
 * The leaf to show when switching to the branch at `id`: the most recently created leaf under it,
 * which is where that branch was last worked on.
 */
export function latestLeaf(messages: ReadonlyMap<number, Message>, id: number): number {
  const children = childrenOf(messages.values());
  let best: Message | undefined;
  const stack = [id];
  while (stack.length) {
    const current = stack.pop()!;
    const kids = children.get(current);
    if (kids?.length) stack.push(...kids.map((k) => k.id));
    else {
      const m = messages.get(current);
      if (m && (!best || byAge(best, m) < 0)) best = m;
    }
  }
  return best?.id ?? id;
}

/** Client-side timing of a streaming answer, until `chat.done` brings the stored figures. */
export interface LiveAnswer {
  thinking: boolean;
  startedAt: number;
}

/**
 * Applies one `chat.delta` to the message it belongs to, in place. While the model reasons, the
 * reasoning figures follow the stream (all completion tokens so far are reasoning tokens); they
 * freeze when reasoning closes, and `chat.done` later replaces them with the stored ones.
 */
export function applyDelta(message: Message, live: LiveAnswer, delta: EventOf<'chat.delta'>, now: number): void {
  message.reasoning += delta.reasoning;
  message.content += delta.content;
  message.completionTokens = delta.completionTokens;
  if (delta.thinking || live.thinking) {
    message.reasoningTokens = delta.completionTokens;
    message.reasoningMs = now - live.startedAt;
  }
  live.thinking = delta.thinking;
}
