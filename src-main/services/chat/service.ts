// Conversations: message trees in SQLite, answers streamed from the engine host with the
// reasoning split from the answer as it streams, and nothing lost when something fails: the
// user's message is stored before generation starts, the answer is saved as it grows, and an
// answer cut short (stop, error, crash) keeps the text written so far.
import { ApiError, type Conversation, type Message, type ModelEntry, type Sampling, type Settings } from '../../contract/api.ts';
import type { ChatMessage } from '../../chat/template.ts';
import type { Database } from '../../db/index.ts';
import * as q from '../../db/conversations.ts';
import { EngineCrashedError } from '../../engine-host/client.ts';
import type { EngineService } from '../engine.ts';
import type { EventBus } from '../events.ts';
import { ReasoningSplitter } from './reasoning.ts';

export interface ModelLookup {
  get(id: number): ModelEntry;
  /** The model a conversation uses when none is chosen and none is loaded (the built-in one), if any. */
  fallback?(): ModelEntry | null;
}

interface Active {
  messageId: number;
  /** The answer so far, ahead of what was last saved. */
  live: { reasoning: string; content: string; completionTokens: number };
  requestId: number | null;
  stopped: boolean;
  done: Promise<void>;
}

/** How often a growing answer is written to the database. */
const SAVE_EVERY_MS = 500;

export class ChatService {
  private readonly active = new Map<number, Active>();

  constructor(
    private readonly db: Database,
    private readonly engine: EngineService,
    private readonly models: ModelLookup,
    private readonly bus: EventBus,
    private readonly settings: () => Settings,
  ) {}

  list(): Conversation[] {
    return q.listConversations(this.db);
  }

  /** The conversation with every branch; an answer being written comes with its text so far. */
  get(id: number): { conversation: Conversation; messages: Message[] } {
    const conversation = this.conversation(id);
    const a = this.active.get(id);
    const messages = q.listMessages(this.db, id).map((m) => (a && m.id === a.messageId ? { ...m, ...a.live } : m));
    return { conversation, messages };
  }

  create(opts: { modelId?: number | null; systemPrompt?: string }): Conversation {
    const s = this.settings();
    const modelId = opts.modelId === undefined ? this.engine.state.modelId : opts.modelId;
    if (modelId !== null) this.models.get(modelId);
    const c = q.createConversation(this.db, { title: 'New chat', modelId, systemPrompt: opts.systemPrompt ?? s.systemPrompt, sampling: s.sampling });
    this.bus.emit('chat.changed', { conversation: c });
    return c;
  }

  update(patch: { id: number; title?: string; modelId?: number | null; systemPrompt?: string; sampling?: Sampling }): Conversation {
    this.conversation(patch.id);
    if (patch.modelId != null) this.models.get(patch.modelId);
    const { id, ...rest } = patch;
    const c = q.updateConversation(this.db, id, rest)!;
    this.bus.emit('chat.changed', { conversation: c });
    return c;
  }

  async delete(id: number): Promise<void> {
    await this.stop(id);
    if (!q.deleteConversation(this.db, id)) throw new ApiError('not_found', `no conversation ${id}`);
  }

  selectLeaf(conversationId: number, leafId: number): Conversation {
    const leaf = q.getMessage(this.db, leafId);
    if (!leaf || leaf.conversationId !== conversationId) throw new ApiError('not_found', `no message ${leafId} in conversation ${conversationId}`);
    const c = q.updateConversation(this.db, conversationId, { leafId })!;
    this.bus.emit('chat.changed', { conversation: c });
    return c;
  }

  /** Stores the user's message, then starts the answer; returns both at once. */
  send(req: { conversationId: number; content: string; parentId?: number | null }): { user: Message; assistant: Message } {
    const c = this.conversation(req.conversationId);
    this.assertIdle(c.id);
    const model = this.modelFor(c);
    const parentId = req.parentId === undefined ? c.leafId : req.parentId;
    if (parentId !== null) {
      const parent = q.getMessage(this.db, parentId);
      if (!parent || parent.conversationId !== c.id) throw new ApiError('not_found', `no message ${parentId} in conversation ${c.id}`);
      if (parent.role !== 'assistant') throw new ApiError('invalid_request', 'a user message follows an answer (or starts the conversation)');
    }
    const { user, assistant } = this.db.transaction(() => {
      const user = q.insertMessage(this.db, { conversationId: c.id, parentId, role: 'user', content: req.content, status: 'done', modelId: null });
      const assistant = q.insertMessage(this.db, { conversationId: c.id, parentId: user.id, role: 'assistant', content: '', status: 'streaming', modelId: model.id });
      const title = c.title === 'New chat' && parentId === null ? titleFrom(req.content) : undefined;
      q.updateConversation(this.db, c.id, { leafId: assistant.id, ...(title ? { title } : {}) });
      return { user, assistant };
    })();
    this.bus.emit('chat.changed', { conversation: this.conversation(c.id) });
    this.start(c.id, assistant, model);
    return { user, assistant };
  }

  /** A new answer beside an earlier one, under the same user message. */
  regenerate(messageId: number): { assistant: Message } {
    const old = q.getMessage(this.db, messageId);
    if (!old || old.role !== 'assistant') throw new ApiError('not_found', `no answer ${messageId}`);
    const c = this.conversation(old.conversationId);
    this.assertIdle(c.id);
    const model = this.modelFor(c);
    const assistant = q.insertMessage(this.db, { conversationId: c.id, parentId: old.parentId, role: 'assistant', content: '', status: 'streaming', modelId: model.id });
    this.bus.emit('chat.changed', { conversation: q.updateConversation(this.db, c.id, { leafId: assistant.id })! });
    this.start(c.id, assistant, model);
    return { assistant };
  }

  async stop(conversationId: number): Promise<void> {
    const a = this.active.get(conversationId);
    if (!a) return;
    a.stopped = true;
    if (a.requestId !== null) await this.engine.cancel(a.requestId).catch(() => false);
    await a.done;
  }

  /** Waits for every answer being written (shutdown, tests). */
  async idle(): Promise<void> {
    await Promise.all([...this.active.values()].map((a) => a.done));
  }

  private conversation(id: number): Conversation {
    const c = q.getConversation(this.db, id);
    if (!c) throw new ApiError('not_found', `no conversation ${id}`);
    return c;
  }

  private assertIdle(conversationId: number): void {
    if (this.active.has(conversationId)) throw new ApiError('conflict', 'an answer is still being written in this conversation: stop it first');
  }

  private modelFor(c: Conversation): ModelEntry {
    const id = c.modelId ?? this.engine.state.modelId;
    if (id === null) {
      const builtin = this.models.fallback?.();
      if (builtin) return builtin;
      throw new ApiError('conflict', 'no model is chosen for this conversation: load one in Models');
    }
    const m = this.models.get(id);
    if (m.missing) throw new ApiError('not_found', `the model file ${m.path} is missing: it was moved or deleted`);
    return m;
  }

  /** The prompt: system prompt, then the thread up to the new answer (earlier reasoning dropped). */
  private promptFor(c: Conversation, assistant: Message): ChatMessage[] {
    const thread = q.messagePath(this.db, assistant.parentId!);
    const out: ChatMessage[] = [];
    if (c.systemPrompt.trim()) out.push({ role: 'system', content: c.systemPrompt });
    for (const m of thread) {
      if (m.role === 'assistant' && !m.content && m.status !== 'done') continue; // an answer that never got past its reasoning
      out.push({ role: m.role, content: m.content });
    }
    return out;
  }

  private start(conversationId: number, assistant: Message, model: ModelEntry): void {
    const a: Active = { messageId: assistant.id, live: { reasoning: '', content: '', completionTokens: 0 }, requestId: null, stopped: false, done: Promise.resolve() };
    this.active.set(conversationId, a);
    a.done = this.generate(conversationId, assistant, model, a).finally(() => this.active.delete(conversationId));
  }

  private async generate(conversationId: number, assistant: Message, model: ModelEntry, a: Active): Promise<void> {
    const c = this.conversation(conversationId);
    const t0 = Date.now();
    let splitter = new ReasoningSplitter(false);
    let reasoning = '';
    let content = '';
    let promptTokens = 0;
    let completionTokens = 0;
    let reasoningMs = 0;
    let reasoningTokens = 0;
    let lastSave = 0;
    const stats = () => ({ reasoning, content, promptTokens, completionTokens, reasoningTokens, reasoningMs, totalMs: Date.now() - t0 });
    const finish = (status: Message['status'], error: string | null) => {
      const message = q.updateMessage(this.db, assistant.id, { ...stats(), status, error })!;
      this.bus.emit('chat.done', { message });
    };
    try {
      await this.engine.ensure(model);
      if (a.stopped) return finish('stopped', null);
      const job = this.engine.chat({ messages: this.promptFor(c, assistant), sampling: c.sampling }, (e) => {
        if (e.type === 'prompt') {
          promptTokens = e.promptTokens;
          splitter = new ReasoningSplitter(e.opensThink);
          return;
        }
        if (e.type !== 'text') return;
        const wasThinking = splitter.thinking;
        const d = splitter.push(e.text);
        completionTokens = e.completionTokens;
        if (wasThinking && !splitter.thinking) {
          reasoningMs = Date.now() - t0;
          reasoningTokens = completionTokens;
        }
        reasoning += d.reasoning;
        content += d.content;
        a.live = { reasoning, content, completionTokens };
        if (d.reasoning || d.content || wasThinking !== splitter.thinking)
          this.bus.emit('chat.delta', { conversationId, messageId: assistant.id, reasoning: d.reasoning, content: d.content, thinking: splitter.thinking, completionTokens });
        if (Date.now() - lastSave > SAVE_EVERY_MS) {
          lastSave = Date.now();
          q.updateMessage(this.db, assistant.id, stats());
        }
      });
      a.requestId = job.id;
      if (a.stopped) await this.engine.cancel(job.id);
      const res = await job.done;
      const rest = splitter.finish();
      reasoning += rest.reasoning;
      content += rest.content;
      if (splitter.thinking && reasoning) {
        // Cut off while still reasoning: all of it was reasoning.
        reasoningMs = Date.now() - t0;
        reasoningTokens = res.completionTokens;
      }
      completionTokens = res.completionTokens;
      promptTokens = res.promptTokens;
      finish(a.stopped || res.finishReason === 'cancelled' ? 'stopped' : 'done', null);
    } catch (e) {
      const message = e instanceof EngineCrashedError ? e.message : `the answer failed: ${(e as Error).message}`;
      finish(a.stopped ? 'stopped' : 'error', a.stopped ? null : message);
    }
  }
}

function titleFrom(text: string): string {
  const line = text.trim().split('\n')[0].replace(/\s+/g, ' ');
  return line.length > 60 ? line.slice(0, 57).trimEnd() + '…' : line || 'New chat';
}
