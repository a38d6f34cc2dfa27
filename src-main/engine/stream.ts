// Text generation on top of the native engine: tokens → text without broken UTF-8, stop strings,
// and cancellation once a stop string appears.
import type { GenerateRequest, GenerateResult, NativeModel } from './native.ts';
import { StreamDecoder } from '../tokenizer/detokenizer.ts';
import type { Tokenizer } from '../tokenizer/tokenizer.ts';

export interface TextRequest extends Omit<GenerateRequest, 'prompt'> {
  prompt: number[];
  /** Generation ends when the text contains one of these; the stop string itself is not returned. */
  stop?: string[];
}

export interface TextResult extends GenerateResult {
  text: string;
}

/** Streams the text of one generation through onText (with the tokens generated so far); resolves with the full text. */
export async function generateText(
  model: NativeModel,
  tokenizer: Tokenizer,
  req: TextRequest,
  onText?: (delta: string, tokens: number) => void,
): Promise<TextResult> {
  const decoder = new StreamDecoder(tokenizer);
  const stops = (req.stop ?? []).filter((s) => s.length > 0);
  const holdBack = stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  let text = '';
  let emitted = 0;
  let stopped = false;
  let tokens = 0;
  const flush = (final: boolean) => {
    const upto = final ? text.length : Math.max(emitted, text.length - holdBack);
    if (upto > emitted) {
      onText?.(text.slice(emitted, upto), tokens);
      emitted = upto;
    }
  };
  const { stop: _stop, ...native } = req;
  const [res] = await model.generate([native], (_i, token) => {
    if (stopped) return;
    tokens++;
    text += decoder.push(token);
    for (const s of stops) {
      const at = text.indexOf(s, Math.max(0, emitted - s.length));
      if (at >= 0) {
        text = text.slice(0, at);
        stopped = true;
        model.cancel();
        break;
      }
    }
    flush(false);
  });
  if (!stopped) text += decoder.flush();
  flush(true);
  return { ...res, text, finishReason: stopped ? 'stop' : res.finishReason };
}
