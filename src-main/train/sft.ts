// SFT examples from a JSONL file, one example a line, as token ids with Hugging Face's labels
// (the token itself where the loss applies, -100 where it does not):
//   {"input_ids": [...], "labels": [...]}   already tokenized (labels default to input_ids)
//   {"prompt": "...", "completion": "..."}  the prompt as a user message, the completion as the answer
//   {"messages": [{"role", "content"}, ...]} a chat ending with the assistant's answer
// Text rows go through the model's chat template: the conversation before the last assistant
// message, rendered with the generation prompt, is the context (no loss); the rest of the rendered
// chat (the answer and its end-of-turn tokens) is what the loss applies to.
import type { ChatMessage, ChatTemplate } from '../chat/template.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';

export interface SftSequence {
  inputIds: number[];
  labels: number[];
}

export interface SftTokenizer {
  tokenizer: Tokenizer;
  template: ChatTemplate;
}

export const IGNORE = -100;

const ROLES = new Set(['system', 'user', 'assistant', 'tool']);

function intArray(v: unknown, what: string, allowIgnore: boolean): number[] {
  if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x) && (x >= 0 || (allowIgnore && x === IGNORE))))
    throw new Error(`${what} must be an array of token ids${allowIgnore ? ' (or -100)' : ''}`);
  return v as number[];
}

function chatSequence(messages: ChatMessage[], tok: SftTokenizer): SftSequence {
  let last = messages.length - 1;
  while (last >= 0 && messages[last].role !== 'assistant') last--;
  if (last < 0) throw new Error('the chat has no assistant message to learn');
  if (!messages[last].content) throw new Error('the last assistant message is empty');
  const opts = { bosToken: tok.tokenizer.bosToken, eosToken: tok.tokenizer.eosToken };
  const context = tok.template.render(messages.slice(0, last), { ...opts, addGenerationPrompt: true });
  const full = tok.template.render(messages.slice(0, last + 1), { ...opts, addGenerationPrompt: false });
  if (!full.startsWith(context))
    throw new Error('the chat template renders the conversation before the answer differently with and without it; cannot tell where the answer starts');
  // Tokenized apart so that the boundary is exact (a BPE merge across it would blur it).
  const ctxIds = tok.tokenizer.encode(context, { addSpecialTokens: false });
  const answerIds = tok.tokenizer.encode(full.slice(context.length), { addSpecialTokens: false });
  if (!answerIds.length) throw new Error('the answer renders to no tokens');
  return { inputIds: [...ctxIds, ...answerIds], labels: [...ctxIds.map(() => IGNORE), ...answerIds] };
}

function messagesFrom(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || !v.length) throw new Error('"messages" must be a non-empty array');
  return v.map((m, i) => {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string')
      throw new Error(`messages[${i}] needs a "role" and a string "content"`);
    if (!ROLES.has(m.role)) throw new Error(`messages[${i}]: unknown role '${m.role}' (system, user, assistant, tool)`);
    return { role: m.role, content: m.content } as ChatMessage;
  });
}

/** One line's example; `tok` is needed only for text rows. */
export function sftSequence(row: unknown, tok?: SftTokenizer): SftSequence {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) throw new Error('a row must be a JSON object');
  const r = row as Record<string, unknown>;
  if ('input_ids' in r) {
    const inputIds = intArray(r.input_ids, '"input_ids"', false);
    const labels = r.labels === undefined ? inputIds : intArray(r.labels, '"labels"', true);
    if (!inputIds.length) throw new Error('"input_ids" is empty');
    if (labels.length !== inputIds.length) throw new Error(`${labels.length} labels for ${inputIds.length} input_ids`);
    return { inputIds, labels };
  }
  let messages: ChatMessage[];
  if ('messages' in r) messages = messagesFrom(r.messages);
  else if ('prompt' in r || 'completion' in r) {
    if (typeof r.prompt !== 'string' || typeof r.completion !== 'string') throw new Error('"prompt" and "completion" must both be strings');
    if (!r.completion) throw new Error('"completion" is empty');
    messages = [
      { role: 'user', content: r.prompt },
      { role: 'assistant', content: r.completion },
    ];
  } else throw new Error('a row needs "input_ids", "messages", or "prompt" and "completion"');
  if (!tok) throw new Error('text rows need the model\'s tokenizer');
  return chatSequence(messages, tok);
}

/** Every example of a JSONL text; errors name the file and line. Blank lines are skipped. */
export function parseSft(text: string, file: string, tok?: SftTokenizer): SftSequence[] {
  const out: SftSequence[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    try {
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new Error(`not JSON (${(e as Error).message})`);
      }
      out.push(sftSequence(row, tok));
    } catch (e) {
      throw new Error(`${file}:${i + 1}: ${(e as Error).message}`);
    }
  }
  if (!out.length) throw new Error(`${file}: no examples`);
  return out;
}

/** Whether any row of the text needs the tokenizer (so pre-tokenized files skip loading it). */
export function needsTokenizer(text: string): boolean {
  return text.split('\n').some((l) => l.trim() && !/^\s*\{\s*"input_ids"/.test(l));
}
