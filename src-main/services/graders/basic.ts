/** Exact match, regex and multiple-choice graders. */
import { afterThink, lastBoxed, lastTag } from './text.ts';
import type { GradeResult } from './types.ts';

export type AnswerSource = 'answer-tag' | 'boxed' | 'after-think' | 'whole';

export interface ExactOptions {
  /** Where the answer is read from: the `<answer>` tag, the last `\boxed{}`, everything after `</think>`, or the whole completion. Default 'after-think'. */
  source?: AnswerSource;
  caseSensitive?: boolean;
  /** Trim and collapse runs of whitespace on both sides before comparing. Default true. */
  normalizeWhitespace?: boolean;
}

export function pickAnswer(completion: string, source: AnswerSource): string | null {
  switch (source) {
    case 'answer-tag': return lastTag(afterThink(completion), 'answer');
    case 'boxed': return lastBoxed(afterThink(completion));
    case 'after-think': return afterThink(completion);
    case 'whole': return completion;
  }
}

function norm(s: string, o: ExactOptions): string {
  let t = o.normalizeWhitespace === false ? s : s.trim().replace(/\s+/g, ' ');
  if (!o.caseSensitive) t = t.toLowerCase();
  return t;
}

export function gradeExact(completion: string, reference: unknown, options: ExactOptions = {}): GradeResult {
  if (typeof reference !== 'string' && typeof reference !== 'number') return { score: 0, explanation: 'no usable reference (expected a string)' };
  const source = options.source ?? 'after-think';
  const got = pickAnswer(completion, source);
  if (got === null) return { score: 0, explanation: `no answer found (${source})` };
  const ok = norm(got, options) === norm(String(reference), options);
  return { score: ok ? 1 : 0, explanation: `${ok ? 'match' : 'no match'}: ${JSON.stringify(got.slice(0, 200))} vs ${JSON.stringify(String(reference).slice(0, 200))}` };
}

export interface RegexOptions {
  pattern: string;
  flags?: string;
  /** 'match': 1 when the pattern matches the text. 'extract': group 1 (or the whole match) of the last match must equal the reference. Default 'match'. */
  mode?: 'match' | 'extract';
  source?: AnswerSource;
  caseSensitive?: boolean;
}

/** Patterns are user-written configs: cap the text scanned to bound catastrophic backtracking. */
const REGEX_MAX_TEXT = 20000;

export function compileRegex(o: RegexOptions): RegExp {
  const flags = (o.flags ?? '').replace(/g/g, '');
  return new RegExp(o.pattern, flags + 'g');
}

export function gradeRegex(completion: string, reference: unknown, options: RegexOptions): GradeResult {
  const re = compileRegex(options);
  const text = pickAnswer(completion, options.source ?? 'whole');
  if (text === null) return { score: 0, explanation: 'no text to match' };
  const t = text.slice(0, REGEX_MAX_TEXT);
  const matches = [...t.matchAll(re)];
  if ((options.mode ?? 'match') === 'match') {
    return { score: matches.length ? 1 : 0, explanation: matches.length ? `matches /${options.pattern}/` : `does not match /${options.pattern}/` };
  }
  if (!matches.length) return { score: 0, explanation: `nothing extracted by /${options.pattern}/` };
  const m = matches[matches.length - 1];
  const got = (m[1] ?? m[0]).trim();
  if (typeof reference !== 'string' && typeof reference !== 'number') return { score: 0, explanation: 'no usable reference (expected a string)' };
  const want = String(reference).trim();
  const ok = options.caseSensitive ? got === want : got.toLowerCase() === want.toLowerCase();
  return { score: ok ? 1 : 0, explanation: `${ok ? 'match' : 'no match'}: extracted ${JSON.stringify(got)} vs ${JSON.stringify(want)}` };
}

export interface MultipleChoiceOptions {
  /** The letters that are choices. Default 'ABCDE'. */
  choices?: string;
}

/**
 * The chosen letter, searched after `</think>`, first rule that finds one wins:
 * `\boxed{B}` / `\boxed{(B)}` / `\boxed{\text{B}}`; `<answer>B</answer>` (or "(B)", "B) ...", "B. ..."); "answer: B", "answer is (B)",
 * "option B", "choice B"; the last "(B)"; a lone letter as the whole answer or on the last line ("B", "B.", "**B**").
 */
export function extractChoice(completion: string, choices = 'ABCDE'): string | null {
  const s = afterThink(completion);
  const L = `[${choices}]`;
  const leading = (t: string): string | null => {
    const m = new RegExp(`^\\s*(?:\\\\text\\{\\s*)?\\(?\\**(${L})\\**\\)?(?:\\s*\\})?(?:[).:\\s]|$)`).exec(t);
    return m ? m[1] : null;
  };
  const boxed = lastBoxed(s);
  if (boxed !== null) { const c = leading(boxed); if (c) return c; }
  const tag = lastTag(s, 'answer');
  if (tag !== null) { const c = leading(tag); if (c) return c; }
  const said = [...s.matchAll(new RegExp(`(?:answer|option|choice)\\s*(?:is|:)?\\s*:?\\s*\\**\\(?(${L})\\)?\\**(?![A-Za-z])`, 'gi'))];
  const saidOk = said.filter((m) => choices.includes(m[1]));
  if (saidOk.length) return saidOk[saidOk.length - 1][1];
  const paren = [...s.matchAll(new RegExp(`\\((${L})\\)`, 'g'))];
  if (paren.length) return paren[paren.length - 1][1];
  const lines = s.trim().split('\n');
  const lastLine = lines[lines.length - 1].trim().replace(/\*/g, '');
  const lone = new RegExp(`^(${L})[.)]?$`).exec(lastLine);
  if (lone) return lone[1];
  return null;
}

export function gradeMultipleChoice(completion: string, reference: unknown, options: MultipleChoiceOptions = {}): GradeResult {
  const choices = options.choices ?? 'ABCDE';
  const want = typeof reference === 'string' ? (/[A-Z]/.exec(reference.toUpperCase())?.[0] ?? null) : null;
  if (!want || !choices.includes(want)) return { score: 0, explanation: `no usable reference (expected one of ${choices})` };
  const got = extractChoice(completion, choices);
  if (!got) return { score: 0, explanation: 'no choice found' };
  return { score: got === want ? 1 : 0, explanation: `chose ${got}, reference ${want}` };
}
