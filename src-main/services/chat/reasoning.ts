// Splits a streamed R1 answer into its reasoning (inside <think>…</think>) and the answer,
// whatever the chunk boundaries: a tag may arrive split over several chunks.
//
// Two ways a completion opens its reasoning:
//   - the model writes `<think>` itself (older R1 templates, Qwen3);
//   - the chat template already ended the prompt with `<think>\n` (R1 since 2025-01), so the
//     completion starts inside the reasoning and only `</think>` appears.
// Text before a `<think>` that is only whitespace is dropped; an answer that never opens a
// think block is all answer.

export const THINK_OPEN = '<think>';
export const THINK_CLOSE = '</think>';

export interface Split {
  reasoning: string;
  content: string;
}

type Phase = 'start' | 'reasoning' | 'answer';

export class ReasoningSplitter {
  private phase: Phase;
  /** Text held back because it may be the start of a tag. */
  private pending = '';
  /** Whitespace at the very start of the answer or reasoning, held until real text comes. */
  private leading = true;

  /** promptOpensThink: the rendered prompt ended inside an open think block. */
  constructor(promptOpensThink = false) {
    this.phase = promptOpensThink ? 'reasoning' : 'start';
  }

  /** True while the reasoning is open (no </think> seen yet). */
  get thinking(): boolean {
    return this.phase === 'reasoning';
  }

  push(chunk: string): Split {
    const out: Split = { reasoning: '', content: '' };
    let text = this.pending + chunk;
    this.pending = '';
    for (;;) {
      if (this.phase === 'start') {
        const trimmed = text.trimStart();
        if (trimmed.startsWith(THINK_OPEN)) {
          this.phase = 'reasoning';
          this.leading = true;
          text = trimmed.slice(THINK_OPEN.length);
          continue;
        }
        if (trimmed.length === 0 || THINK_OPEN.startsWith(trimmed)) {
          this.pending = text; // undecided: maybe the start of <think>
          return out;
        }
        this.phase = 'answer';
        this.leading = true;
        continue;
      }
      if (this.phase === 'reasoning') {
        const at = text.indexOf(THINK_CLOSE);
        if (at >= 0) {
          this.emit(out, 'reasoning', text.slice(0, at).trimEnd());
          this.phase = 'answer';
          this.leading = true;
          text = text.slice(at + THINK_CLOSE.length);
          continue;
        }
        // Hold back a possible start of </think>, and trailing whitespace: it may end the reasoning.
        let cut = text.length - partialSuffix(text, THINK_CLOSE);
        while (cut > 0 && /\s/.test(text[cut - 1])) cut--;
        this.emit(out, 'reasoning', text.slice(0, cut));
        this.pending = text.slice(cut);
        return out;
      }
      this.emit(out, 'content', text);
      return out;
    }
  }

  /** The end of the stream: whatever was held back is text after all. */
  finish(): Split {
    const out: Split = { reasoning: '', content: '' };
    const rest = this.pending;
    this.pending = '';
    if (this.phase === 'reasoning') this.emit(out, 'reasoning', rest.trimEnd());
    else this.emit(out, 'content', this.phase === 'start' ? rest.trimStart() : rest);
    return out;
  }

  private emit(out: Split, field: keyof Split, text: string): void {
    if (this.leading) {
      text = text.replace(/^\s+/, '');
      if (!text) return;
      this.leading = false;
    }
    out[field] += text;
  }
}

/** Length of the longest suffix of text that is a proper prefix of tag. */
function partialSuffix(text: string, tag: string): number {
  for (let n = Math.min(tag.length - 1, text.length); n > 0; n--) if (tag.startsWith(text.slice(text.length - n))) return n;
  return 0;
}

/** Splits a whole completion at once (the non-streaming API, stored messages). */
export function splitReasoning(completion: string, promptOpensThink = false): Split & { thinking: boolean } {
  const s = new ReasoningSplitter(promptOpensThink);
  const a = s.push(completion);
  const thinking = s.thinking;
  const b = s.finish();
  return { reasoning: a.reasoning + b.reasoning, content: a.content + b.content, thinking };
}

/** Whether a rendered prompt leaves a think block open for the completion to continue. */
export function promptOpensThink(prompt: string): boolean {
  const open = prompt.lastIndexOf(THINK_OPEN);
  return open >= 0 && prompt.indexOf(THINK_CLOSE, open) < 0 && /^\s*$/.test(prompt.slice(open + THINK_OPEN.length));
}
