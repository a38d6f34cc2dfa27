// Chat templates (Jinja, from tokenizer_config.json or the GGUF's tokenizer.chat_template)
// rendered with @huggingface/jinja, the same engine transformers.js uses.
import { Template } from '@huggingface/jinja';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
}

export interface RenderOptions {
  bosToken?: string;
  eosToken?: string;
  addGenerationPrompt?: boolean;
}

/** A plain, named fallback for models without a usable template. */
export const FALLBACK_TEMPLATE_NAME = 'chatml';
const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export class ChatTemplate {
  private readonly template: Template;

  constructor(readonly source: string, readonly name = 'model') {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new Error(`chat template (${name}) does not parse: ${(e as Error).message}`);
    }
  }

  static fallback(): ChatTemplate {
    return new ChatTemplate(CHATML, FALLBACK_TEMPLATE_NAME);
  }

  render(messages: ChatMessage[], opts: RenderOptions = {}): string {
    try {
      return this.template.render({
        messages,
        bos_token: opts.bosToken ?? '',
        eos_token: opts.eosToken ?? '',
        add_generation_prompt: opts.addGenerationPrompt ?? true,
      });
    } catch (e) {
      throw new Error(`chat template (${this.name}) failed to render: ${(e as Error).message}`);
    }
  }
}
