/** Weighted composition of graders. */
import type { GradeInput, GradeResult } from './types.ts';

/** A named grader: what the registry builds and composition combines. */
export interface Grader {
  name: string;
  grade(input: GradeInput): GradeResult | Promise<GradeResult>;
}

export interface GraderPart { name: string; weight: number; score: number; explanation: string; details?: Record<string, unknown> }

export interface ComposedResult extends GradeResult {
  details: { parts: GraderPart[] };
}

/**
 * score = Σ weight_i · score_i (a weighted sum, not a mean: weights 1 + 1 on two 0..1 graders give 0..2).
 * Every part's score and explanation is kept in details.parts. Parts run concurrently.
 */
export interface ComposedGrader { name: string; grade(input: GradeInput): Promise<ComposedResult> }

export function composeGraders(parts: Array<{ grader: Grader; weight: number }>, name = 'composite'): ComposedGrader {
  for (const p of parts) if (!Number.isFinite(p.weight)) throw new RangeError(`weight of ${p.grader.name} is not a finite number`);
  return {
    name,
    async grade(input: GradeInput): Promise<ComposedResult> {
      const results = await Promise.all(parts.map(async (p) => ({ p, r: await p.grader.grade(input) })));
      const out: GraderPart[] = results.map(({ p, r }) => ({ name: p.grader.name, weight: p.weight, score: r.score, explanation: r.explanation, ...(r.details ? { details: r.details } : {}) }));
      const score = out.reduce((s, x) => s + x.weight * x.score, 0);
      return {
        score,
        explanation: out.map((x) => `${x.name} ×${x.weight}: ${x.score.toFixed(3)} (${x.explanation})`).join('\n'),
        details: { parts: out },
      };
    },
  };
}
