// Incremental detokenization for streaming: text appears token by token, never with half a
// UTF-8 character (byte-level BPE splits multi-byte characters across tokens).
import type { Tokenizer } from './tokenizer.ts';

export class StreamDecoder {
  private ids: number[] = [];
  private emitted = '';

  constructor(private readonly tokenizer: Tokenizer, private readonly skipSpecialTokens = true) {}

  /** The new text this token completes ('' while a character is still incomplete). */
  push(id: number): string {
    this.ids.push(id);
    const text = this.tokenizer.decode(this.ids, { skipSpecialTokens: this.skipSpecialTokens });
    if (text.endsWith('\uFFFD')) return '';
    const delta = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : text.slice(Math.min(this.emitted.length, text.length));
    this.emitted = text;
    // Keep the window short: restart from the last complete text once it grows.
    if (this.ids.length > 64) {
      this.ids = [];
      this.emitted = '';
    }
    return delta;
  }

  /** Whatever is still held back at the end of generation (an incomplete character). */
  flush(): string {
    if (!this.ids.length) return '';
    const text = this.tokenizer.decode(this.ids, { skipSpecialTokens: this.skipSpecialTokens });
    const rest = text.startsWith(this.emitted) ? text.slice(this.emitted.length) : '';
    this.ids = [];
    this.emitted = '';
    return rest;
  }
}
