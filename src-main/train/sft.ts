// SFT examples from a JSONL file, one example a line, as token ids with Hugging Face's labels
// (the token itself where the loss applies, -100 where it does not):
//   {"input_ids": [...], "labels": [...]}   already tokenized (labels default to input_ids)
//   {"prompt": "...", "completion": "..."}  the prompt as a user message, the completion as the answer
//   {"messages": [{"role", "content"}, ...]} a chat with one or more assistant answers
// Text rows go through the model's chat template; the loss applies to every assistant answer
// (with its end-of-turn tokens), never to the system, user or tool messages or the template's
// role markers.
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

// Loss on every assistant turn of the chat as the template renders it whole. A turn's answer
// starts where the conversation before it, rendered with the generation prompt, ends (or stops
// agreeing with the whole chat); it ends
// where the chat rendered through that turn ends — or, for templates that render a non-final
// turn differently (Qwen3's empty think block only on the last turn), after the turn's end-of-turn
// text (what follows the answer when it is last) found after the answer's final text. Each piece is
// tokenized on its own so that the boundaries are exact (a BPE merge across one would blur it).
function answerEnd(full: string, start: number, through: string, content: string): number {
  if (full.startsWith(through) && through.length > start) return through.length;
  const visible = content.split('</think>').pop()!.trim();
  const k = visible ? through.lastIndexOf(visible) : -1;
  const at = visible ? full.indexOf(visible, start) : -1;
  const eot = k >= 0 ? through.slice(k + visible.length) : '';
  const end = at >= 0 && eot ? full.indexOf(eot, at + visible.length) : -1;
  return end >= 0 ? end + eot.length : -1;
}

// The final answer's text after a generation prompt: the content without what the prompt already
// ends with (R1's "<think>\n"), then the end-of-turn text the template puts after an answer.
function finalAnswer(prompt: string, through: string, content: string): string | undefined {
  let overlap = 0;
  for (let k = Math.min(prompt.length, content.length); k > 0; k--)
    if (prompt.endsWith(content.slice(0, k))) {
      overlap = k;
      break;
    }
  const visible = content.split('</think>').pop()!.trim();
  const k = visible ? through.lastIndexOf(visible) : -1;
  if (k < 0) return undefined;
  return content.slice(overlap) + through.slice(k + visible.length);
}

function chatSequence(messages: ChatMessage[], tok: SftTokenizer): SftSequence {
  const turns = messages.flatMap((m, i) => (m.role === 'assistant' ? [i] : []));
  if (!turns.length) throw new Error('the chat has no assistant message to learn');
  for (const i of turns) if (!messages[i].content) throw new Error(`messages[${i}]: the assistant message is empty`);
  const opts = { bosToken: tok.tokenizer.bosToken, eosToken: tok.tokenizer.eosToken };
  const full = tok.template.render(messages, { ...opts, addGenerationPrompt: false });
  const encode = (text: string) => (text ? tok.tokenizer.encode(text, { addSpecialTokens: false }) : []);
  const inputIds: number[] = [];
  const labels: number[] = [];
  const push = (ids: number[], learn: boolean) => {
    inputIds.push(...ids);
    labels.push(...(learn ? ids : ids.map(() => IGNORE)));
  };
  let at = 0;
  for (const i of turns) {
    const before = tok.template.render(messages.slice(0, i), { ...opts, addGenerationPrompt: true });
    const through = tok.template.render(messages.slice(0, i + 1), { ...opts, addGenerationPrompt: false });
    if (!full.startsWith(before) && i === messages.length - 1 && before.startsWith(full.slice(0, at))) {
      // The generation prompt adds what the rendered turn lacks (DeepSeek-R1's "<think>\n", and
      // R1 drops an answer's reasoning when it renders it): the final answer is then learned as
      // the model will be asked for it, the prompt with the generation prompt, the answer as
      // written (reasoning included) and the turn's end.
      push(encode(before.slice(at)), false);
      const answer = finalAnswer(before, through, messages[i].content);
      if (answer === undefined)
        throw new Error(`the chat template renders the conversation up to messages[${i}] differently from the whole chat; cannot tell where that answer starts and ends`);
      push(encode(answer), true);
      return { inputIds, labels };
    }
    // An earlier turn starts where the generation prompt and the whole chat part (R1's generation
    // prompt ends "<think>\n", which its rendered turns lack).
    let start = 0;
    while (start < before.length && before[start] === full[start]) start++;
    const end = start >= at ? answerEnd(full, start, through, messages[i].content) : -1;
    if (end <= start)
      throw new Error(`the chat template renders the conversation up to messages[${i}] differently from the whole chat; cannot tell where that answer starts and ends`);
    push(encode(full.slice(at, start)), false);
    const answer = encode(full.slice(start, end));
    if (!answer.length) throw new Error(`messages[${i}]: the answer renders to no tokens`);
    push(answer, true);
    at = end;
  }
  push(encode(full.slice(at)), false);
  return { inputIds, labels };
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

/** A training set's examples, with the rows that could not be used (line number and why) instead of failing on the first. */
export function readSftExamples(text: string, tok?: SftTokenizer): { examples: (SftSequence & { line: number })[]; skipped: { line: number; reason: string }[] } {
  const examples: (SftSequence & { line: number })[] = [];
  const skipped: { line: number; reason: string }[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      skipped.push({ line: i + 1, reason: `not JSON (${(e as Error).message})` });
      continue;
    }
    try {
      const s = sftSequence(row, tok);
      if (!s.labels.slice(1).some((l) => l !== IGNORE)) throw new Error('no token carries the loss');
      examples.push({ ...s, line: i + 1 });
    } catch (e) {
      skipped.push({ line: i + 1, reason: (e as Error).message });
    }
  }
  return { examples, skipped };
}

/** Whether any row of the text needs the tokenizer (so pre-tokenized files skip loading it). */
export function needsTokenizer(text: string): boolean {
  return text.split('\n').some((l) => l.trim() && !/^\s*\{\s*"input_ids"/.test(l));
}
