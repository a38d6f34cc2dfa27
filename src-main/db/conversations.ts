// Conversations and their messages. Messages form a tree (regenerations and edits are siblings
// under one parent); a conversation shows the path from the root to its leaf.
import { Sampling, defaultSampling, type Conversation, type Message } from '../contract/api.ts';
import type { Database } from './index.ts';
import { parseJsonOr } from './json.ts';

/** The error a message left 'streaming' by a crash or a kill ends with. */
export const INTERRUPTED = 'interrupted: the app stopped while this answer was being written';

// ---------------------------------------------------------------------------------------------
// Conversations

interface ConversationRow {
  id: number;
  title: string;
  model_id: number | null;
  system_prompt: string;
  sampling: string;
  leaf_id: number | null;
  created_at: number;
  updated_at: number;
}

function toConversation(r: ConversationRow): Conversation {
  return {
    id: r.id,
    title: r.title,
    modelId: r.model_id,
    systemPrompt: r.system_prompt,
    sampling: parseJsonOr(Sampling, defaultSampling, r.sampling),
    leafId: r.leaf_id,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export interface NewConversation {
  title: string;
  modelId: number | null;
  systemPrompt: string;
  sampling: Sampling;
}

export function createConversation(db: Database, c: NewConversation, now = Date.now()): Conversation {
  const row = db
    .prepare(
      `INSERT INTO conversations (title, model_id, system_prompt, sampling, leaf_id, created_at, updated_at)
       VALUES (?, ?, ?, ?, NULL, ?, ?) RETURNING *`,
    )
    .get(c.title, c.modelId, c.systemPrompt, JSON.stringify(c.sampling), now, now) as ConversationRow;
  return toConversation(row);
}

export function getConversation(db: Database, id: number): Conversation | undefined {
  const row = db.prepare('SELECT * FROM conversations WHERE id = ?').get(id) as ConversationRow | undefined;
  return row && toConversation(row);
}

/** Most recently updated first. */
export function listConversations(db: Database): Conversation[] {
  const rows = db.prepare('SELECT * FROM conversations ORDER BY updated_at DESC, id DESC').all() as ConversationRow[];
  return rows.map(toConversation);
}

export type ConversationUpdate = Partial<Pick<Conversation, 'title' | 'modelId' | 'systemPrompt' | 'sampling' | 'leafId'>>;

const conversationColumns: Record<keyof ConversationUpdate, string> = {
  title: 'title',
  modelId: 'model_id',
  systemPrompt: 'system_prompt',
  sampling: 'sampling',
  leafId: 'leaf_id',
};

/** Changes the given fields and bumps updated_at; undefined if there is no such conversation. */
export function updateConversation(db: Database, id: number, patch: ConversationUpdate, now = Date.now()): Conversation | undefined {
  const sets = ['updated_at = @updatedAt'];
  const params: Record<string, unknown> = { id, updatedAt: now };
  for (const key of Object.keys(conversationColumns) as Array<keyof ConversationUpdate>) {
    const value = patch[key];
    if (value === undefined) continue;
    sets.push(`${conversationColumns[key]} = @${key}`);
    params[key] = key === 'sampling' ? JSON.stringify(value) : value;
  }
  const row = db.prepare(`UPDATE conversations SET ${sets.join(', ')} WHERE id = @id RETURNING *`).get(params) as ConversationRow | undefined;
  return row && toConversation(row);
}

/** Deletes a conversation and all its messages. */
export function deleteConversation(db: Database, id: number): boolean {
  return db.prepare('DELETE FROM conversations WHERE id = ?').run(id).changes > 0;
}

// ---------------------------------------------------------------------------------------------
// Messages

interface MessageRow {
  id: number;
  conversation_id: number;
  parent_id: number | null;
  role: Message['role'];
  content: string;
  reasoning: string;
  status: Message['status'];
  error: string | null;
  model_id: number | null;
  prompt_tokens: number;
  completion_tokens: number;
  reasoning_tokens: number;
  reasoning_ms: number;
  total_ms: number;
  created_at: number;
}

function toMessage(r: MessageRow): Message {
  return {
    id: r.id,
    conversationId: r.conversation_id,
    parentId: r.parent_id,
    role: r.role,
    content: r.content,
    reasoning: r.reasoning,
    status: r.status,
    error: r.error,
    modelId: r.model_id,
    promptTokens: r.prompt_tokens,
    completionTokens: r.completion_tokens,
    reasoningTokens: r.reasoning_tokens,
    reasoningMs: r.reasoning_ms,
    totalMs: r.total_ms,
    createdAt: r.created_at,
  };
}

export interface NewMessage {
  conversationId: number;
  /** Null for a first message; must belong to the same conversation. */
  parentId: number | null;
  role: Message['role'];
  content: string;
  /** 'done' for a user message, 'streaming' for an answer about to be written. */
  status: Message['status'];
  modelId: number | null;
}

/** Adds a message with empty reasoning and zero stats. */
export function insertMessage(db: Database, m: NewMessage, now = Date.now()): Message {
  const row = db
    .prepare(
      `INSERT INTO messages (conversation_id, parent_id, role, content, reasoning, status, error, model_id,
                             prompt_tokens, completion_tokens, reasoning_tokens, reasoning_ms, total_ms, created_at)
       VALUES (?, ?, ?, ?, '', ?, NULL, ?, 0, 0, 0, 0, 0, ?) RETURNING *`,
    )
    .get(m.conversationId, m.parentId, m.role, m.content, m.status, m.modelId, now) as MessageRow;
  return toMessage(row);
}

export function getMessage(db: Database, id: number): Message | undefined {
  const row = db.prepare('SELECT * FROM messages WHERE id = ?').get(id) as MessageRow | undefined;
  return row && toMessage(row);
}

export type MessageUpdate = Partial<
  Pick<Message, 'content' | 'reasoning' | 'status' | 'error' | 'promptTokens' | 'completionTokens' | 'reasoningTokens' | 'reasoningMs' | 'totalMs'>
>;

const messageColumns: Record<keyof MessageUpdate, string> = {
  content: 'content',
  reasoning: 'reasoning',
  status: 'status',
  error: 'error',
  promptTokens: 'prompt_tokens',
  completionTokens: 'completion_tokens',
  reasoningTokens: 'reasoning_tokens',
  reasoningMs: 'reasoning_ms',
  totalMs: 'total_ms',
};

/** Writes an answer's text so far, its status and stats; undefined if there is no such message. */
export function updateMessage(db: Database, id: number, patch: MessageUpdate): Message | undefined {
  const sets: string[] = [];
  const params: Record<string, unknown> = { id };
  for (const key of Object.keys(messageColumns) as Array<keyof MessageUpdate>) {
    if (patch[key] === undefined) continue;
    sets.push(`${messageColumns[key]} = @${key}`);
    params[key] = patch[key];
  }
  const sql = sets.length ? `UPDATE messages SET ${sets.join(', ')} WHERE id = @id RETURNING *` : 'SELECT * FROM messages WHERE id = @id';
  const row = db.prepare(sql).get(params) as MessageRow | undefined;
  return row && toMessage(row);
}

/** Every message of a conversation, all branches, oldest first. */
export function listMessages(db: Database, conversationId: number): Message[] {
  const rows = db.prepare('SELECT * FROM messages WHERE conversation_id = ? ORDER BY id').all(conversationId) as MessageRow[];
  return rows.map(toMessage);
}

/** The thread that ends at `leafId`: its ancestors from the root, then the leaf itself. */
export function messagePath(db: Database, leafId: number): Message[] {
  const rows = db
    .prepare(
      `WITH RECURSIVE path (id, parent_id, depth) AS (
         SELECT id, parent_id, 0 FROM messages WHERE id = ?
         UNION ALL
         SELECT m.id, m.parent_id, path.depth + 1 FROM messages m JOIN path ON m.id = path.parent_id
       )
       SELECT messages.* FROM path JOIN messages USING (id) ORDER BY path.depth DESC`,
    )
    .all(leafId) as MessageRow[];
  return rows.map(toMessage);
}

/** The message and its alternatives: every message under the same parent, oldest first. */
export function messageSiblings(db: Database, messageId: number): Message[] {
  const rows = db
    .prepare(
      `SELECT s.* FROM messages m JOIN messages s
         ON s.conversation_id = m.conversation_id AND s.parent_id IS m.parent_id
       WHERE m.id = ? ORDER BY s.id`,
    )
    .all(messageId) as MessageRow[];
  return rows.map(toMessage);
}

/**
 * Ends the answers a crash or kill left 'streaming' as errors, keeping the text written so far;
 * run once at startup, before any generation. Returns how many there were.
 */
export function recoverInterruptedMessages(db: Database): number {
  return db.prepare(`UPDATE messages SET status = 'error', error = ? WHERE status = 'streaming'`).run(INTERRUPTED).changes;
}
