// A conversation → the prompt tokens the model sees, through the model's own chat template.
import type { ChatMessage } from '../chat/template.ts';
import { promptOpensThink } from '../services/chat/reasoning.ts';
import type { OpenModel } from './open.ts';

export interface RenderedChat {
  text: string;
  tokens: number[];
  /** The template ended the prompt inside an open <think> block (R1 since 2025-01). */
  opensThink: boolean;
}

export function renderChat(m: OpenModel, messages: ChatMessage[]): RenderedChat {
  const text = m.template.render(messages, { bosToken: m.tokenizer.bosToken, eosToken: m.tokenizer.eosToken, addGenerationPrompt: true });
  // The template writes the BOS itself where the model wants one.
  const tokens = m.tokenizer.encode(text, { addSpecialTokens: false });
  return { text, tokens, opensThink: promptOpensThink(text) };
}
