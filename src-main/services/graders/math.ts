/**
 * Math answer grader: extract the final answer from a completion, normalize it and the reference, compare.
 *
 * Extraction (searching only after the last `</think>` when there is one), first rule that finds something wins:
 *   1. the last `\boxed{...}` (nested braces, `\fbox`, `\boxed 5`);
 *   2. the last `<answer>...</answer>` (a `\boxed{}` or "the answer is" inside it is taken further);
 *   3. GSM8K style `#### 42`;
 *   4. "the (final) answer is X" / "answer: X" (to the end of the line or sentence);
 *   5. the last number (integers, decimals, `1,000`, `a/b`, an optional `%`).
 *
 * Equivalence rules (the golden table in tests/unit/graders-math.test.ts is the spec):
 *   - LaTeX is read: \frac \dfrac \tfrac \cfrac (also `\frac12`), \sqrt{x} \sqrt[n]{x} \sqrt2, \pi, \infty, \cdot \times \div,
 *     \left \right, spacing (\! \, \; \: ~), ^\circ and °, \text{...} \mathrm{...} \textbf{...} unwrapped, $ and \$ dropped;
 *     a mixed number `2\frac{1}{2}` is 2 + 1/2.
 *   - Thousands separators on a lone number: `1,000`, `1{,}000`, `1\,000`, `1 000`.
 *   - A leading `x =` (one variable) is dropped, as is a trailing unit (cm, m^2, \text{ cm}, dollars, degrees, ...).
 *   - Percent: `50%` equals both `50` and `0.5` (either reading is accepted when one side carries `%`); `50` vs `0.5` is false.
 *   - Rational values compare exactly (bigint): 1/2 = 0.5 = \frac{2}{4}; 12 ≠ 1.2; 1000000 ≠ 1000001.
 *     Anything with radicals, π, e or functions compares numerically with a relative tolerance (default 1e-6):
 *     \frac{\sqrt{3}}{2} = \sqrt{3}/2 = \frac{1}{2}\sqrt{3}; 3.14 ≠ \pi.
 *     Expressions with single-letter variables compare by evaluation at seeded random points: x+1 = 1+x, 2(x+1) = 2x+2.
 *   - Tuples and intervals `(1, 2)`, `[0, 1)`: ordered, bracket kinds must match. Sets `\{1, 2\}`: unordered.
 *     A bare list `1, 2` is unordered (roots of an equation) and equals the set with the same elements.
 *   - Anything else compares as text: lowercase, no spaces, no braces ("\text{(B)}" = "(b)" = "b").
 */
import { afterThink, lastBoxed, lastTag, readBraced } from './text.ts';
import { evalFloat, evalRational, parseExpression, variablesOf, type Node } from './expr.ts';
import type { GradeInput, GradeResult } from './types.ts';

export interface MathOptions {
  /** Relative tolerance for non-rational comparisons. Default 1e-6. */
  relTol?: number;
  /** Absolute tolerance (for values near 0). Default 1e-9. */
  absTol?: number;
  /** When the completion has no `</think>`, still grade it (true, default) or score 0 (false: reasoning must be closed). */
  allowUnclosedThink?: boolean;
}

export type MathValue =
  | { kind: 'expr'; node: Node; percent: boolean; text: string }
  | { kind: 'tuple'; open: string; close: string; items: MathValue[] }
  | { kind: 'set'; items: MathValue[] }
  | { kind: 'list'; items: MathValue[] }
  | { kind: 'text'; text: string };

export interface Extracted {
  answer: string;
  via: 'boxed' | 'answer-tag' | 'gsm8k' | 'answer-is' | 'last-number';
}

const NUMBER_RE = /[-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*\/\s*\d+)?%?|[-−]?\.\d+%?/g;

function answerIs(s: string): string | null {
  const re = /(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?/gi;
  let last: RegExpExecArray | null = null;
  for (let m = re.exec(s); m; m = re.exec(s)) last = m;
  if (!last) return null;
  let rest = s.slice(last.index + last[0].length);
  rest = rest.split('\n')[0];
  // End of sentence: a period followed by a space (and not inside a number like "3.5").
  const stop = /\.\s|;\s/.exec(rest);
  if (stop) rest = rest.slice(0, stop.index);
  rest = rest.trim().replace(/[.;!]+$/, '').trim();
  return rest.length ? rest : null;
}

/** Find the final answer in a completion (see the module comment for the rules), or null. */
export function extractAnswer(completion: string): Extracted | null {
  const s = afterThink(completion);
  const boxed = lastBoxed(s);
  if (boxed !== null) return { answer: boxed.trim(), via: 'boxed' };
  const tag = lastTag(s, 'answer');
  if (tag !== null) {
    const inner = lastBoxed(tag) ?? (/answer/i.test(tag) ? answerIs(tag) : null);
    return { answer: (inner ?? tag).trim(), via: 'answer-tag' };
  }
  const gsm = /####\s*([^\n]+)/g;
  let g: RegExpExecArray | null = null;
  for (let m = gsm.exec(s); m; m = gsm.exec(s)) g = m;
  if (g) return { answer: g[1].trim(), via: 'gsm8k' };
  const is = answerIs(s);
  if (is !== null) return { answer: is, via: 'answer-is' };
  const nums = s.match(NUMBER_RE);
  if (nums && nums.length) return { answer: nums[nums.length - 1].replace(/\s+/g, ''), via: 'last-number' };
  return null;
}

const UNITS = [
  'mm', 'cm', 'm', 'km', 'in', 'inch', 'inches', 'ft', 'feet', 'foot', 'yd', 'yard', 'yards', 'mile', 'miles', 'mi',
  'meter', 'meters', 'metre', 'metres', 'centimeter', 'centimeters', 'kilometer', 'kilometers', 'millimeter', 'millimeters',
  'mg', 'g', 'kg', 'gram', 'grams', 'kilogram', 'kilograms', 'lb', 'lbs', 'pound', 'pounds', 'oz', 'ounce', 'ounces', 'ton', 'tons',
  'ml', 'l', 'liter', 'liters', 'litre', 'litres', 'gallon', 'gallons', 'cup', 'cups',
  's', 'sec', 'secs', 'second', 'seconds', 'min', 'mins', 'minute', 'minutes', 'h', 'hr', 'hrs', 'hour', 'hours',
  'day', 'days', 'week', 'weeks', 'month', 'months', 'year', 'years',
  'dollar', 'dollars', 'cent', 'cents', 'usd', 'euro', 'euros',
  'degree', 'degrees', 'deg', 'rad', 'radian', 'radians',
  'unit', 'units', 'sq', 'square', 'cubic', 'mph', 'kmh', 'people', 'students', 'apples', 'items',
];
const UNIT_RE = new RegExp(`^(.*?[\\d)}a-z])\\s*(?:(?:${UNITS.join('|')})(?:\\^?\\(?[23]\\)?|²|³)?\\s*)+$`, 'i');

/** Remove LaTeX text wrappers, keeping their content. */
function unwrapText(s: string): string {
  const re = /\\(?:text|textbf|textit|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{/;
  for (let guard = 0; guard < 50; guard++) {
    const m = re.exec(s);
    if (!m) break;
    const open = m.index + m[0].length - 1;
    const g = readBraced(s, open);
    if (!g) break;
    s = s.slice(0, m.index) + g.inner + s.slice(g.end);
  }
  return s;
}

/** Surface cleanup shared by every answer: delimiters, spacing, degree signs, text wrappers, dollar signs. */
export function cleanAnswer(raw: string): string {
  let s = raw.trim();
  const boxed = lastBoxed(s);
  if (boxed !== null && /^\\(?:boxed|fbox)/.test(s)) s = boxed;
  s = s.replace(/\*\*/g, '');
  s = s.replace(/\\displaystyle|\\(?:big|Big|bigg|Bigg)[lr]?|\\left|\\right/g, '');
  s = s.replace(/\\[(]|\\[)]|\\\[|\\\]/g, '');
  s = s.replace(/\\\$/g, '').replace(/\$/g, '');
  s = unwrapText(s);
  s = s.replace(/\^\s*\{?\s*\\circ\s*\}?|°|\\circ|\\degree/g, '');
  s = s.replace(/\{,\}/g, '');
  s = s.replace(/(\d)\\,(?=\d{3}(?!\d))/g, '$1');
  s = s.replace(/\\[!,;: ]|~/g, ' ');
  s = s.replace(/\\[dtc]frac/g, '\\frac');
  s = s.replace(/\\%/g, '%');
  s = s.replace(/[−–]/g, '-');
  s = s.replace(/\\le(?:q)?\b/g, '≤').replace(/\\ge(?:q)?\b/g, '≥');
  s = s.replace(/\s+/g, ' ').trim();
  s = s.replace(/[.。]+$/, '').trim();
  return s;
}

/** Split on commas at bracket depth 0. */
function splitTop(s: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\' && (s[i + 1] === '{' || s[i + 1] === '}')) {
      depth += s[i + 1] === '{' ? 1 : -1;
      cur += c + s[i + 1];
      i++;
      continue;
    }
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    if (c === ',' && depth === 0) { parts.push(cur.trim()); cur = ''; } else cur += c;
  }
  parts.push(cur.trim());
  return parts;
}

/** Whether s[0] opens a bracket that closes exactly at the end of s. */
function wrapsWhole(s: string, open: number, closeAt: number): boolean {
  let depth = 0;
  for (let i = open; i <= closeAt; i++) {
    const c = s[i];
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c)) depth--;
    if (depth === 0 && i < closeAt) return false;
  }
  return true;
}

/** Rewrite the LaTeX math subset to the plain syntax of expr.ts; null when something unknown remains. */
export function latexToPlain(s: string): string | null {
  let out = '';
  let i = 0;
  const arg = (): string | null => {
    while (s[i] === ' ') i++;
    if (s[i] === '{') {
      const g = readBraced(s, i);
      if (!g) return null;
      i = g.end;
      return latexToPlain(g.inner);
    }
    if (s[i] === '\\') {
      const m = /^\\[A-Za-z]+/.exec(s.slice(i));
      if (!m) return null;
      i += m[0].length;
      return latexToPlain(m[0]);
    }
    if (i < s.length) return s[i++];
    return null;
  };
  while (i < s.length) {
    const c = s[i];
    if (c === '\\') {
      const m = /^\\([A-Za-z]+)/.exec(s.slice(i));
      if (!m) return null;
      const name = m[1];
      i += m[0].length;
      if (name === 'frac') {
        const a = arg();
        const b = arg();
        if (a === null || b === null) return null;
        out += `((${a})/(${b}))`;
      } else if (name === 'sqrt') {
        let index: string | null = null;
        while (s[i] === ' ') i++;
        if (s[i] === '[') {
          const close = s.indexOf(']', i);
          if (close < 0) return null;
          index = latexToPlain(s.slice(i + 1, close));
          i = close + 1;
        }
        const a = arg();
        if (a === null) return null;
        out += index === null ? `sqrt(${a})` : `root((${a}),(${index}))`;
      } else if (name === 'pi') out += ' pi ';
      else if (name === 'infty' || name === 'infinity') out += ' inf ';
      else if (name === 'cdot' || name === 'times' || name === 'ast') out += '*';
      else if (name === 'div') out += '/';
      else if (['sin', 'cos', 'tan', 'ln', 'log', 'exp'].includes(name)) out += ` ${name} `;
      else return null;
    } else if (c === '{') {
      out += '(';
      i++;
    } else if (c === '}') {
      out += ')';
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

function scalar(s: string): MathValue {
  let t = s.trim();
  let percent = false;
  if (/%$/.test(t)) { percent = true; t = t.slice(0, -1).trim(); }
  t = t.replace(/^\+/, '');
  // Mixed number: 2\frac{1}{2} is 2 + 1/2 (integers only; 2\frac{\pi}{3} stays a product).
  t = t.replace(/(^|[^\d.])(\d+)\s*\\frac\s*(?:\{(\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))/g, (_m, pre, whole, a1, a2, b1, b2) => `${pre}(${whole}+${a1 ?? a2}/${b1 ?? b2})`);
  const plain = latexToPlain(t);
  if (plain !== null && !/[=<>≤≥]/.test(plain)) {
    const p = parseExpression(plain);
    if (p.ok) return { kind: 'expr', node: p.node, percent, text: t };
  }
  return { kind: 'text', text: textKey(s) };
}

function textKey(s: string): string {
  return unwrapText(s).toLowerCase().replace(/\\[{}]/g, '').replace(/[\s{}]/g, '').replace(/^\((\w)\)$/, '$1');
}

/** Parse a cleaned answer into a structured value. */
export function parseAnswer(raw: string): MathValue {
  let s = cleanAnswer(raw);
  // "x = 5", "y=\frac12", "\theta = 30": drop one leading single-variable assignment. "x \in [0, 1]" likewise.
  s = s.replace(/^(?:[A-Za-z]|\\[A-Za-z]+)(?:_\{?\w+\}?)?\s*(?:=|\\in)\s*(?=[^=]*$)/, '');
  // Trailing units: "5 cm", "12 cm^2", "3 dollars".
  const u = UNIT_RE.exec(s);
  if (u && /\d/.test(u[1])) s = u[1].trim();
  // Leading currency words.
  s = s.replace(/^(?:usd|us\$)\s*/i, '');
  // Thousands separators on a lone number.
  if (/^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?$/.test(s)) s = s.replace(/,/g, '');
  if (/^[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?%?$/.test(s)) s = s.replace(/ /g, '');
  if (s.length === 0) return { kind: 'text', text: '' };

  if (s.startsWith('\\{') && s.endsWith('\\}')) {
    const inner = s.slice(2, -2).trim();
    return { kind: 'set', items: inner.length ? splitTop(inner).map(parseAnswer) : [] };
  }
  const first = s[0];
  const last = s[s.length - 1];
  if ((first === '(' || first === '[') && (last === ')' || last === ']')) {
    const inner = s.slice(1, -1);
    const parts = splitTop(inner);
    const intervalLike = first !== last.replace(')', '(').replace(']', '[') || parts.length > 1;
    if (parts.length > 1 && (intervalLike || wrapsWhole(s, 0, s.length - 1))) {
      return { kind: 'tuple', open: first, close: last, items: parts.map(parseAnswer) };
    }
  }
  const parts = splitTop(s);
  if (parts.length > 1) return { kind: 'list', items: parts.map(parseAnswer) };
  return scalar(s);
}

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), (x >>> 0) / 2 ** 32);
}

function close(a: number, b: number, relTol: number, absTol: number): boolean {
  if (Number.isNaN(a) || Number.isNaN(b)) return false;
  if (!Number.isFinite(a) || !Number.isFinite(b)) return a === b;
  return Math.abs(a - b) <= Math.max(relTol * Math.max(Math.abs(a), Math.abs(b)), absTol);
}

function exprEqual(a: Extract<MathValue, { kind: 'expr' }>, b: Extract<MathValue, { kind: 'expr' }>, o: Required<MathOptions>): boolean {
  const scalesA = a.percent ? [1, 100] : [1];
  const scalesB = b.percent ? [1, 100] : [1];
  const vars = new Set([...variablesOf(a.node), ...variablesOf(b.node)]);
  if (vars.size === 0) {
    const ra = evalRational(a.node);
    const rb = evalRational(b.node);
    if (ra && rb) {
      // Exact: a/sa == b/sb  <=>  a*sb == b*sa
      for (const sa of scalesA) for (const sb of scalesB) {
        if (ra.n * BigInt(sb) * rb.d === rb.n * BigInt(sa) * ra.d) return true;
      }
      return false;
    }
    const fa = evalFloat(a.node);
    const fb = evalFloat(b.node);
    for (const sa of scalesA) for (const sb of scalesB) if (close(fa / sa, fb / sb, o.relTol, o.absTol)) return true;
    return false;
  }
  // Symbolic: evaluate at seeded random points; every point where both are defined must agree.
  const r = rng(12345);
  let valid = 0;
  for (let k = 0; k < 12 && valid < 6; k++) {
    const env: Record<string, number> = {};
    for (const v of vars) env[v] = 0.5 + 2 * r();
    const fa = evalFloat(a.node, env);
    const fb = evalFloat(b.node, env);
    if (!Number.isFinite(fa) || !Number.isFinite(fb)) continue;
    if (!close(fa, fb, o.relTol, o.absTol)) return false;
    valid++;
  }
  return valid >= 3;
}

function unordered(a: MathValue[], b: MathValue[], o: Required<MathOptions>): boolean {
  if (a.length !== b.length) return false;
  const used = new Array<boolean>(b.length).fill(false);
  for (const x of a) {
    const j = b.findIndex((y, k) => !used[k] && valuesEqual(x, y, o));
    if (j < 0) return false;
    used[j] = true;
  }
  return true;
}

export function valuesEqual(a: MathValue, b: MathValue, o: Required<MathOptions>): boolean {
  if (a.kind === 'expr' && b.kind === 'expr' && exprEqual(a, b, o)) return true;
  if (a.kind === 'tuple' && b.kind === 'tuple') {
    return a.open === b.open && a.close === b.close && a.items.length === b.items.length && a.items.every((x, i) => valuesEqual(x, b.items[i], o));
  }
  if ((a.kind === 'set' || a.kind === 'list') && (b.kind === 'set' || b.kind === 'list')) return unordered(a.items, b.items, o);
  // A one-element set equals its element.
  if (a.kind === 'set' && a.items.length === 1 && (b.kind === 'expr' || b.kind === 'text')) return valuesEqual(a.items[0], b, o);
  if (b.kind === 'set' && b.items.length === 1 && (a.kind === 'expr' || a.kind === 'text')) return valuesEqual(a, b.items[0], o);
  const ka = a.kind === 'text' ? a.text : a.kind === 'expr' ? textKey(a.text) + (a.percent ? '%' : '') : null;
  const kb = b.kind === 'text' ? b.text : b.kind === 'expr' ? textKey(b.text) + (b.percent ? '%' : '') : null;
  return ka !== null && kb !== null && ka.length > 0 && ka === kb;
}

const DEFAULTS: Required<MathOptions> = { relTol: 1e-6, absTol: 1e-9, allowUnclosedThink: true };

/** Whether two answers are the same by the rules above (the reference need not be extracted). */
export function mathEqual(gold: string, answer: string, options: MathOptions = {}): boolean {
  const o = { ...DEFAULTS, ...options };
  return valuesEqual(parseAnswer(gold), parseAnswer(answer), o);
}

export function referenceString(reference: unknown): string | null {
  if (typeof reference === 'string') return reference;
  if (typeof reference === 'number' && Number.isFinite(reference)) return String(reference);
  if (reference && typeof reference === 'object' && 'answer' in reference) return referenceString((reference as { answer: unknown }).answer);
  return null;
}

/** 1 when the completion's final answer equals the reference, else 0. The reference may itself be a full solution (its final answer is extracted). */
export function gradeMathAnswer(completion: string, reference: unknown, options: MathOptions = {}): GradeResult {
  const o = { ...DEFAULTS, ...options };
  const refText = referenceString(reference);
  if (refText === null) return { score: 0, explanation: 'no usable reference answer (expected a string or number)' };
  if (!o.allowUnclosedThink && !completion.includes('</think>')) {
    return { score: 0, explanation: 'reasoning not closed with </think>' };
  }
  const ex = extractAnswer(completion);
  if (!ex) return { score: 0, explanation: 'no final answer found', details: { reference: refText } };
  // A reference written as a solution ("... #### 42", "\boxed{7}") is reduced to its final answer; a bare answer is kept.
  const refBoxed = lastBoxed(refText);
  const gsm = /####\s*([^\n]+)\s*$/.exec(refText);
  const gold = refBoxed ?? (gsm ? gsm[1] : refText);
  const ok = valuesEqual(parseAnswer(gold), parseAnswer(ex.answer), o);
  return {
    score: ok ? 1 : 0,
    explanation: `${ok ? 'correct' : 'wrong'}: answer ${JSON.stringify(ex.answer)} (from ${ex.via}) vs reference ${JSON.stringify(gold.trim())}`,
    details: { answer: ex.answer, via: ex.via, reference: gold.trim() },
  };
}

export function mathGrader(options: MathOptions = {}) {
  return (input: GradeInput): GradeResult => gradeMathAnswer(input.completion, input.reference, options);
}
