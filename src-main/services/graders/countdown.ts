/**
 * Countdown checker: reach `target` with the given `numbers` using + − × ÷ and parentheses, each number at most once
 * (exactly once with `useAll`). The expression is parsed by the safe parser of expr.ts (no unary signs, no implicit
 * products, no powers, no functions, no variables) and evaluated exactly with bigint rationals: 7/2*2 is 7, 1/3*3 is 1.
 *
 * The expression is read from the completion after `</think>`: the last `<answer>` tag, else the last `\boxed{}`, else the
 * last line with an operator. A trailing "= 24" (or a leading "24 =") is allowed and must equal the target.
 * Score: 1 when correct, `formatScore` (default 0) when an expression was found but is wrong, 0 when none was found.
 */
import { afterThink, lastBoxed, lastTag } from './text.ts';
import { evalRational, numbersOf, parseExpression, Rational } from './expr.ts';
import type { GradeResult } from './types.ts';

export interface CountdownReference { numbers: number[]; target: number }
export interface CountdownOptions { useAll?: boolean; formatScore?: number }

export function parseCountdownReference(reference: unknown): CountdownReference | null {
  let r = reference;
  if (typeof r === 'string') {
    try { r = JSON.parse(r); } catch { return null; }
  }
  if (!r || typeof r !== 'object') return null;
  const { numbers, target } = r as { numbers?: unknown; target?: unknown };
  if (!Array.isArray(numbers) || !numbers.every((n) => Number.isSafeInteger(n) && n >= 0) || !Number.isSafeInteger(target)) return null;
  return { numbers: numbers as number[], target: target as number };
}

export function extractCountdownExpression(completion: string): string | null {
  const s = afterThink(completion);
  const tag = lastTag(s, 'answer');
  if (tag !== null) return tag;
  const boxed = lastBoxed(s);
  if (boxed !== null) return boxed;
  const lines = s.split('\n').map((l) => l.trim()).filter((l) => /\d\s*[-+*/×÷−]\s*[\d(]/.test(l));
  return lines.length ? lines[lines.length - 1] : null;
}

export function checkCountdown(expression: string, ref: CountdownReference, options: CountdownOptions = {}): { ok: boolean; wellFormed: boolean; why: string } {
  let text = expression.replace(/\$/g, '').replace(/\\times|\\cdot/g, '*').replace(/\\div/g, '/').replace(/\\left|\\right/g, '').trim();
  const sides = text.split('=').map((p) => p.trim());
  if (sides.length > 2) return { ok: false, wellFormed: false, why: 'more than one "="' };
  if (sides.length === 2) {
    const [l, r] = sides;
    const numericSide = /^\d+$/.test(r) ? r : /^\d+$/.test(l) ? l : null;
    if (numericSide === null) return { ok: false, wellFormed: false, why: 'an "=" with no plain number on either side' };
    if (Number(numericSide) !== ref.target) return { ok: false, wellFormed: true, why: `claims ${numericSide}, target is ${ref.target}` };
    text = numericSide === r ? l : r;
  }
  if (/[^\d\s+\-*/()×÷−]/.test(text)) return { ok: false, wellFormed: false, why: `characters other than numbers, + - * / and parentheses in ${JSON.stringify(text)}` };
  const p = parseExpression(text, { variables: false, functions: false, constants: false, implicitMultiplication: false, power: false, unary: false });
  if (!p.ok) return { ok: false, wellFormed: false, why: `cannot parse ${JSON.stringify(text)}: ${p.error}` };
  const used = numbersOf(p.node);
  if (used.some((n) => !/^\d+$/.test(n))) return { ok: false, wellFormed: false, why: 'only whole numbers from the list may appear' };
  const pool = new Map<number, number>();
  for (const n of ref.numbers) pool.set(n, (pool.get(n) ?? 0) + 1);
  for (const n of used.map(Number)) {
    const left = pool.get(n) ?? 0;
    if (left === 0) return { ok: false, wellFormed: true, why: ref.numbers.includes(n) ? `${n} used more often than given` : `${n} is not among ${JSON.stringify(ref.numbers)}` };
    pool.set(n, left - 1);
  }
  if (options.useAll && used.length !== ref.numbers.length) return { ok: false, wellFormed: true, why: `uses ${used.length} of ${ref.numbers.length} numbers; all are required` };
  const v = evalRational(p.node);
  if (v === null) return { ok: false, wellFormed: true, why: 'division by zero' };
  const ok = v.equals(new Rational(BigInt(ref.target)));
  return { ok, wellFormed: true, why: ok ? `${text} = ${ref.target}` : `${text} = ${v.toString()}, not ${ref.target}` };
}

export function gradeCountdown(completion: string, reference: unknown, options: CountdownOptions = {}): GradeResult {
  const ref = parseCountdownReference(reference);
  if (!ref) return { score: 0, explanation: 'no usable reference (expected { numbers: int[], target: int })' };
  const expr = extractCountdownExpression(completion);
  if (expr === null) return { score: 0, explanation: 'no expression found' };
  const r = checkCountdown(expr, ref, options);
  return { score: r.ok ? 1 : r.wellFormed ? options.formatScore ?? 0 : 0, explanation: `${r.ok ? 'correct' : 'wrong'}: ${r.why}`, details: { expression: expr } };
}
