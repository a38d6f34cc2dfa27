/** What every grader sees: one prompt, one sampled completion, the item's reference (a string for math, an object for code or countdown). */
export interface GradeInput {
  prompt: string;
  completion: string;
  reference?: unknown;
  /** Length of the completion in tokens when the caller knows it (the GRPO loop does); used by length shaping with unit 'tokens'. */
  completionTokens?: number;
}

/** A grader's verdict: a score (0..1 unless the grader documents another range) and a human-readable reason. */
export interface GradeResult {
  score: number;
  explanation: string;
  /** Machine-readable extras (the extracted answer, per-test results...). */
  details?: Record<string, unknown>;
}

export type GradeFn = (input: GradeInput) => GradeResult | Promise<GradeResult>;

export function result(score: number, explanation: string, details?: Record<string, unknown>): GradeResult {
  return details ? { score, explanation, details } : { score, explanation };
}
