// Conversations and the open one: its whole message tree, the thread on screen (the path to its
// leaf), and the answers streaming into it from `chat.delta` until `chat.done` brings them whole.
import type { Conversation, EventOf, Message, RequestOf } from '../../src-main/contract/api.ts';
import { api } from '../lib/api.ts';
import { applyDelta, buildThread, latestLeaf, type LiveAnswer, type ThreadEntry } from '../lib/thread.ts';
import { settings } from './settings.svelte.ts';
import { models } from './models.svelte.ts';
import { attempt } from './toasts.svelte.ts';

export const chat = $state({
  /** Most recently updated first. */
  conversations: [] as Conversation[],
  loaded: false,
  open: null as Conversation | null,
  /** Every message of the open conversation, all branches, by id. */
  messages: {} as Record<number, Message>,
  /** Answers streaming in the open conversation, by message id. */
  live: {} as Record<number, LiveAnswer>,
  /** A send, edit or regenerate is on its way to the server. */
  sending: false,
});

/** Deltas that arrived before the request that created their message answered. */
const early = new Map<number, EventOf<'chat.delta'>[]>();
/**
 * Answers still streaming in conversations that left the screen, kept growing: the stored text
 * `chat.get` returns lags behind the stream, so coming back takes whichever holds more.
 */
const offscreen = new Map<number, { message: Message; live: LiveAnswer }>();
/** Bumped on every switch of conversation, so that a late answer for the previous one is dropped. */
let openToken = 0;

export function thread(): ThreadEntry[] {
  return buildThread(new Map(Object.values(chat.messages).map((m) => [m.id, m])), chat.open?.leafId ?? null);
}

export function isStreaming(): boolean {
  return Object.values(chat.messages).some((m) => m.status === 'streaming');
}

function sortConversations(): void {
  chat.conversations.sort((a, b) => b.updatedAt - a.updatedAt || b.id - a.id);
}

function upsertConversation(conversation: Conversation): void {
  const i = chat.conversations.findIndex((c) => c.id === conversation.id);
  if (i >= 0) chat.conversations[i] = conversation;
  else chat.conversations.push(conversation);
  sortConversations();
  if (chat.open?.id === conversation.id) Object.assign(chat.open, conversation);
}

const streamedLength = (m: Message) => m.reasoning.length + m.content.length;

/**
 * Takes a message the server sent whole. Deltas carry no offsets, so the ones that came before
 * it are replayed only onto a message just created (`replay`: its text is still empty); a
 * snapshot from `chat.get` may already hold them, and `chat.done` settles the text either way.
 */
function track(message: Message, { startedAt = Date.now(), replay = false } = {}): void {
  const kept = offscreen.get(message.id);
  offscreen.delete(message.id);
  if (kept && message.status === 'streaming' && streamedLength(kept.message) >= streamedLength(message)) {
    message = kept.message;
    chat.live[message.id] = kept.live;
  }
  const known = chat.messages[message.id];
  // `chat.done`, or a snapshot read meanwhile, can overtake the answer to the request that started the message.
  if (message.status === 'streaming' && known && (known.status !== 'streaming' || streamedLength(known) > streamedLength(message))) return;
  chat.messages[message.id] = message;
  const queued = early.get(message.id);
  early.delete(message.id);
  if (message.status !== 'streaming') return;
  chat.live[message.id] ??= { thinking: message.content === '' && message.reasoning !== '', startedAt };
  if (replay) for (const delta of queued ?? []) onDelta(delta);
}

function onDelta(delta: EventOf<'chat.delta'>): void {
  if (chat.open?.id !== delta.conversationId) {
    const kept = offscreen.get(delta.messageId);
    if (kept) applyDelta(kept.message, kept.live, delta, Date.now());
    return;
  }
  const message = chat.messages[delta.messageId];
  if (!message) {
    const queued = early.get(delta.messageId);
    if (queued) queued.push(delta);
    else early.set(delta.messageId, [delta]);
    return;
  }
  if (message.status !== 'streaming') return;
  const live = (chat.live[message.id] ??= { thinking: false, startedAt: Date.now() });
  applyDelta(message, live, delta, Date.now());
}

function onDone({ message }: EventOf<'chat.done'>): void {
  early.delete(message.id);
  offscreen.delete(message.id);
  if (chat.open?.id !== message.conversationId) return;
  chat.messages[message.id] = message;
  delete chat.live[message.id];
}

export function watchChat(): () => void {
  const offs = [
    api.on('chat.changed', ({ conversation }) => {
      upsertConversation(conversation);
      // The leaf moved to a message this window has not seen (sent from another window; this
      // window's own sends bring their messages in their answers).
      if (chat.open?.id === conversation.id && !chat.sending && conversation.leafId !== null && !chat.messages[conversation.leafId]) {
        void reloadOpen();
      }
    }),
    api.on('chat.delta', onDelta),
    api.on('chat.done', onDone),
  ];
  return () => offs.forEach((off) => off());
}

export async function loadConversations(): Promise<void> {
  const list = await attempt(() => api.invoke('chat.list', {}), 'Could not list the conversations', { background: true });
  if (!list) return;
  chat.conversations = list;
  sortConversations();
  chat.loaded = true;
}

/** Puts a conversation on screen (or none); answers streaming in the one leaving are kept growing. */
function show(conversation: Conversation | null, messages: Message[]): void {
  for (const m of Object.values(chat.messages)) {
    if (m.status !== 'streaming') continue;
    const live = chat.live[m.id] ?? { thinking: false, startedAt: Date.now() };
    offscreen.set(m.id, { message: $state.snapshot(m), live: { ...live } });
  }
  early.clear();
  chat.open = conversation;
  chat.messages = {};
  chat.live = {};
  for (const m of messages) track(m);
}

export async function openConversation(id: number): Promise<void> {
  const token = ++openToken;
  const got = await attempt(() => api.invoke('chat.get', { id }), 'Could not open the conversation');
  if (!got || token !== openToken) return;
  show(got.conversation, got.messages);
}

/** After a reconnect: whatever happened meanwhile is read again. */
export async function reloadOpen(): Promise<void> {
  if (chat.open) await openConversation(chat.open.id);
}

export function closeConversation(): void {
  openToken++;
  show(null, []);
}

/** The model a new conversation starts with: the one loaded, else the last one used, else the first. */
function defaultModelId(): number | null {
  const present = models.list.filter((m) => !m.missing);
  if (models.engine.modelId !== null && present.some((m) => m.id === models.engine.modelId)) return models.engine.modelId;
  const recent = chat.conversations.find((c) => c.modelId !== null && present.some((m) => m.id === c.modelId));
  return recent?.modelId ?? present[0]?.id ?? null;
}

export async function newConversation(): Promise<Conversation | undefined> {
  const conversation = await attempt(
    () => api.invoke('chat.create', { modelId: defaultModelId(), systemPrompt: settings.value?.systemPrompt ?? '' }),
    'Could not start a conversation',
  );
  if (!conversation) return undefined;
  upsertConversation(conversation);
  openToken++;
  show(conversation, []);
  return conversation;
}

async function sending<T>(action: () => Promise<T>, doing: string): Promise<T | undefined> {
  chat.sending = true;
  try {
    return await attempt(action, doing);
  } finally {
    chat.sending = false;
  }
}

/**
 * Sends a message after `parentId` (the thread's last message to continue it, or an earlier
 * message's parent to edit and resend it, keeping the old branch). Starts a conversation if none
 * is open. Resolves to whether it was sent, so the composer keeps the text when it was not.
 */
export async function send(content: string, parentId?: number | null): Promise<boolean> {
  const conversation = chat.open ?? (await newConversation());
  if (!conversation) return false;
  const startedAt = Date.now();
  const payload: RequestOf<'chat.send'> = {
    conversationId: conversation.id,
    content,
    parentId: parentId === undefined ? conversation.leafId : parentId,
  };
  const sent = await sending(() => api.invoke('chat.send', payload), 'Could not send the message');
  if (!sent || chat.open?.id !== conversation.id) return sent !== undefined;
  track(sent.user);
  track(sent.assistant, { startedAt, replay: true });
  chat.open.leafId = sent.assistant.id;
  return true;
}

export async function regenerate(messageId: number): Promise<void> {
  const conversationId = chat.open?.id;
  const startedAt = Date.now();
  const got = await sending(() => api.invoke('chat.regenerate', { messageId }), 'Could not regenerate the answer');
  if (!got || !chat.open || chat.open.id !== conversationId) return;
  track(got.assistant, { startedAt, replay: true });
  chat.open.leafId = got.assistant.id;
}

export async function stop(): Promise<void> {
  if (!chat.open) return;
  const conversationId = chat.open.id;
  await attempt(() => api.invoke('chat.stop', { conversationId }), 'Could not stop the answer');
}

/** Shows the sibling branch `step` places away from the message in `entry`. */
export async function switchBranch(entry: ThreadEntry, step: -1 | 1): Promise<void> {
  const target = entry.siblings[entry.index + step];
  if (target === undefined || !chat.open) return;
  const conversationId = chat.open.id;
  const leafId = latestLeaf(new Map(Object.values(chat.messages).map((m) => [m.id, m])), target);
  const conversation = await attempt(() => api.invoke('chat.selectLeaf', { conversationId, leafId }), 'Could not switch branches');
  if (conversation) upsertConversation(conversation);
}

export async function updateConversation(patch: Omit<RequestOf<'chat.update'>, 'id'>, id = chat.open?.id): Promise<boolean> {
  if (id === undefined) return false;
  const conversation = await attempt(() => api.invoke('chat.update', { id, ...patch }), 'Could not save the conversation');
  if (conversation) upsertConversation(conversation);
  return conversation !== undefined;
}

export async function deleteConversation(id: number): Promise<void> {
  const ok = await attempt(() => api.invoke('chat.delete', { id }), 'Could not delete the conversation');
  if (!ok) return;
  chat.conversations = chat.conversations.filter((c) => c.id !== id);
  if (chat.open?.id === id) {
    const next = chat.conversations[0];
    if (next) await openConversation(next.id);
    else closeConversation();
  }
}
