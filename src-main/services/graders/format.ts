/**
 * Format grader: a closed think block, an answer tag, no language mixing.
 *
 * Think block, by `think` option:
 *   'tags'   — the completion starts (after whitespace) with `<think>` and has exactly one `<think>` and one `</think>` after it;
 *   'forced' — the chat template already opened the block (the prompt ends with `<think>`): the completion has no `<think>`
 *              and exactly one `</think>`;
 *   'either' (default) — one of the two;
 *   'none'   — not checked.
 * In every mode the reasoning inside must be non-empty and some text must follow `</think>`.
 *
 * Answer tag (`answerTag`, default true): exactly one `<answer>…</answer>` pair, non-empty, after `</think>`.
 *
 * Language mixing (`language`): letters are counted by Unicode script (\p{L} only: digits, punctuation, math symbols,
 * emoji and Greek letters, common in math, are neutral). The target script is `script` ('latin', 'han', 'cyrillic', ...)
 * or, with 'auto' (default), the script with the most letters in the prompt (the completion when the prompt has none).
 * Japanese kana and Han count as one script ("cjk") as do Korean Hangul and Han. The foreign share is
 * (letters in the checked region not in the target script) / (all letters there); the check passes when it is at most
 * `maxForeignShare` (default 0.02). The region is the answer after `</think>`, the reasoning, or all (default).
 *
 * Score: 1 when every enabled check passes, else 0; with `partial: true`, the fraction of checks that pass.
 */
import { escapeRegExp } from './text.ts';
import type { GradeResult } from './types.ts';

export type ScriptName = 'latin' | 'cjk' | 'hangul' | 'cyrillic' | 'arabic' | 'hebrew' | 'devanagari' | 'thai' | 'other';

export interface FormatOptions {
  think?: 'tags' | 'forced' | 'either' | 'none';
  answerTag?: boolean;
  /** Tag name for the answer. Default 'answer'. */
  answerTagName?: string;
  language?: { script?: ScriptName | 'auto'; maxForeignShare?: number; region?: 'answer' | 'reasoning' | 'all' } | false;
  partial?: boolean;
}

const SCRIPTS: Array<[ScriptName, RegExp]> = [
  ['latin', /\p{Script=Latin}/u],
  ['cjk', /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]/u],
  ['hangul', /\p{Script=Hangul}/u],
  ['cyrillic', /\p{Script=Cyrillic}/u],
  ['arabic', /\p{Script=Arabic}/u],
  ['hebrew', /\p{Script=Hebrew}/u],
  ['devanagari', /\p{Script=Devanagari}/u],
  ['thai', /\p{Script=Thai}/u],
];
const GREEK = /\p{Script=Greek}/u;

/** Letter counts by script (Greek and non-letters are not counted). */
export function scriptCounts(text: string): Map<ScriptName, number> {
  const counts = new Map<ScriptName, number>();
  for (const ch of text) {
    const code = ch.charCodeAt(0);
    if (code < 128) {
      // ASCII fast path: letters are Latin, the rest is neutral.
      if ((code >= 65 && code <= 90) || (code >= 97 && code <= 122)) counts.set('latin', (counts.get('latin') ?? 0) + 1);
      continue;
    }
    if (!/\p{L}/u.test(ch) || GREEK.test(ch)) continue;
    const s = SCRIPTS.find(([, re]) => re.test(ch))?.[0] ?? 'other';
    counts.set(s, (counts.get(s) ?? 0) + 1);
  }
  return counts;
}

function dominant(counts: Map<ScriptName, number>): ScriptName | null {
  let best: ScriptName | null = null;
  let n = 0;
  for (const [s, c] of counts) if (c > n) { best = s; n = c; }
  return best;
}

export interface LanguageCheck { ok: boolean; script: ScriptName | null; foreignShare: number; letters: number }

export function languageMixing(text: string, target: ScriptName | 'auto', maxForeignShare: number, prompt = ''): LanguageCheck {
  const counts = scriptCounts(text);
  let letters = 0;
  for (const c of counts.values()) letters += c;
  const script = target === 'auto' ? (dominant(scriptCounts(prompt)) ?? dominant(counts)) : target;
  if (letters === 0 || script === null) return { ok: true, script, foreignShare: 0, letters };
  const foreignShare = (letters - (counts.get(script) ?? 0)) / letters;
  return { ok: foreignShare <= maxForeignShare, script, foreignShare, letters };
}

function count(s: string, needle: string): number {
  return s.split(needle).length - 1;
}

export function gradeFormat(prompt: string, completion: string, options: FormatOptions = {}): GradeResult {
  const think = options.think ?? 'either';
  const checks: Array<{ name: string; ok: boolean; why: string }> = [];
  const close = completion.indexOf('</think>');
  const reasoningEnd = close < 0 ? completion.length : close;
  const answerPart = close < 0 ? completion : completion.slice(close + '</think>'.length);
  let reasoning = completion.slice(0, reasoningEnd);

  if (think !== 'none') {
    const opens = count(completion, '<think>');
    const closes = count(completion, '</think>');
    const startsWithTag = completion.trimStart().startsWith('<think>');
    const tagsOk = startsWithTag && opens === 1 && closes === 1;
    const forcedOk = opens === 0 && closes === 1;
    if (startsWithTag) reasoning = reasoning.trimStart().slice('<think>'.length);
    const shapeOk = think === 'tags' ? tagsOk : think === 'forced' ? forcedOk : tagsOk || forcedOk;
    const ok = shapeOk && reasoning.trim().length > 0 && answerPart.trim().length > 0;
    checks.push({
      name: 'think',
      ok,
      why: ok ? 'closed think block' : closes === 0 ? 'think block not closed' : !shapeOk ? `bad think tags (${opens} <think>, ${closes} </think>, mode ${think})` : reasoning.trim().length === 0 ? 'empty reasoning' : 'nothing after </think>',
    });
  }
  if (options.answerTag ?? true) {
    const name = options.answerTagName ?? 'answer';
    const re = new RegExp(`<${escapeRegExp(name)}>([\\s\\S]*?)</${escapeRegExp(name)}>`, 'g');
    const found = [...answerPart.matchAll(re)];
    const ok = found.length === 1 && found[0][1].trim().length > 0 && count(answerPart, `<${name}>`) === 1;
    checks.push({ name: 'answer-tag', ok, why: ok ? `one <${name}> tag` : found.length === 0 ? `no <${name}>…</${name}> after the reasoning` : found.length > 1 ? `${found.length} <${name}> tags` : `empty or unbalanced <${name}> tag` });
  }
  if (options.language !== false) {
    const l = options.language ?? {};
    const region = l.region ?? 'all';
    const text = region === 'answer' ? answerPart : region === 'reasoning' ? reasoning : completion;
    const r = languageMixing(text.replace(/<\/?[a-z]+>/g, ''), l.script ?? 'auto', l.maxForeignShare ?? 0.02, prompt);
    checks.push({ name: 'language', ok: r.ok, why: `${(r.foreignShare * 100).toFixed(1)}% of ${r.letters} letters outside ${r.script ?? 'any script'}` });
  }
  const passed = checks.filter((c) => c.ok).length;
  const score = checks.length === 0 ? 1 : options.partial ? passed / checks.length : passed === checks.length ? 1 : 0;
  return { score, explanation: checks.map((c) => `${c.ok ? '✓' : '✗'} ${c.name}: ${c.why}`).join('; '), details: { checks } };
}
