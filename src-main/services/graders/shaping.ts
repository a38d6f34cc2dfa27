/**
 * Shaping rewards (not in 0..1):
 *
 * Cosine length reward — Yeo et al. 2025, "Demystifying Long Chain-of-Thought Reasoning in LLMs", as in open-r1's
 * get_cosine_scaled_reward: with progress p = min(len, maxLength) / maxLength and c = cos(p·π),
 *   correct: r = minCorrect + ½(maxCorrect − minCorrect)(1 + c)    (short correct → maxCorrect, long correct → minCorrect)
 *   wrong:   r = maxWrong + ½(minWrong − maxWrong)(1 + c)          (short wrong → minWrong, long wrong → maxWrong)
 * and `exceedPenalty` (when set) replaces r for completions longer than maxLength. Range [minWrong, maxCorrect].
 *
 * Repetition penalty — open-r1's get_repetition_penalty_reward: words = lowercased whitespace split; over all n-grams of
 * `ngramSize` words, r = (1 − distinct / total) · maxPenalty (maxPenalty ≤ 0). 0 for an empty text or fewer words than n.
 * Range [maxPenalty, 0].
 */
import type { GradeResult } from './types.ts';

export interface CosineLengthOptions {
  minValueWrong?: number;
  maxValueWrong?: number;
  minValueCorrect?: number;
  maxValueCorrect?: number;
  maxLength?: number;
  /** 'chars', 'words', or 'tokens' (GradeInput.completionTokens; falls back to chars/4 when the caller gives none). Default 'tokens'. */
  unit?: 'chars' | 'words' | 'tokens';
  exceedPenalty?: number;
}

export const COSINE_DEFAULTS = { minValueWrong: -1, maxValueWrong: -0.5, minValueCorrect: 0.5, maxValueCorrect: 1, maxLength: 1000, unit: 'tokens' as const };

export function completionLength(completion: string, unit: 'chars' | 'words' | 'tokens', tokens?: number): number {
  if (unit === 'chars') return [...completion].length;
  if (unit === 'words') return completion.split(/\s+/).filter(Boolean).length;
  return tokens ?? Math.ceil(completion.length / 4);
}

export function cosineLengthReward(length: number, correct: boolean, options: CosineLengthOptions = {}): number {
  const o = { ...COSINE_DEFAULTS, ...options };
  if (o.exceedPenalty !== undefined && length > o.maxLength) return o.exceedPenalty;
  const progress = Math.min(length, o.maxLength) / o.maxLength;
  const c = Math.cos(progress * Math.PI);
  const [lo, hi] = correct ? [o.minValueCorrect, o.maxValueCorrect] : [o.maxValueWrong, o.minValueWrong];
  return lo + 0.5 * (hi - lo) * (1 + c);
}

export function gradeCosineLength(length: number, correct: boolean, options: CosineLengthOptions = {}): GradeResult {
  const r = cosineLengthReward(length, correct, options);
  const o = { ...COSINE_DEFAULTS, ...options };
  return { score: r, explanation: `${correct ? 'correct' : 'wrong'}, length ${length}/${o.maxLength} ${o.unit} → ${r.toFixed(4)}` };
}

export interface RepetitionOptions {
  ngramSize?: number;
  /** ≤ 0. Default -1. */
  maxPenalty?: number;
}

export function repetitionPenalty(text: string, options: RepetitionOptions = {}): { penalty: number; distinct: number; total: number } {
  const n = options.ngramSize ?? 3;
  const maxPenalty = options.maxPenalty ?? -1;
  if (maxPenalty > 0) throw new RangeError(`maxPenalty ${maxPenalty} should not be positive`);
  const words = text.toLowerCase().split(/\s+/).filter(Boolean);
  if (words.length < n || words.length === 0) return { penalty: 0, distinct: 0, total: 0 };
  const seen = new Set<string>();
  let total = 0;
  for (let i = 0; i + n <= words.length; i++) {
    seen.add(words.slice(i, i + n).join('\u0000'));
    total++;
  }
  return { penalty: (1 - seen.size / total) * maxPenalty + 0, distinct: seen.size, total }; // + 0: no -0
}

export function gradeRepetition(completion: string, options: RepetitionOptions = {}): GradeResult {
  const r = repetitionPenalty(completion, options);
  return { score: r.penalty, explanation: `${r.distinct} distinct of ${r.total} ${options.ngramSize ?? 3}-grams → ${r.penalty.toFixed(4)}` };
}
