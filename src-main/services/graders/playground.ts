/** The grader playground: run any grader config on pasted or sampled completions. */
import { graderFromConfig, type RegistryContext } from './config.ts';
import type { GradeInput } from './types.ts';

export interface PlaygroundItem { prompt?: string; completion: string; reference?: unknown; completionTokens?: number }

export interface PlaygroundResult {
  index: number;
  score: number;
  explanation: string;
  details?: Record<string, unknown>;
  /** Set when grading this item threw (the score is then 0). */
  error?: string;
  ms: number;
}

/**
 * Validates the config (throws GraderConfigError when it is invalid), then grades every item concurrently (code runs
 * through the sandbox pool) and returns one result per item, in order. An item whose grading throws gets score 0 and
 * `error` (e.g. the sandbox is unavailable); the others are unaffected.
 */
export async function runGrader(config: unknown, items: PlaygroundItem[], ctx: RegistryContext = {}): Promise<PlaygroundResult[]> {
  const grader = graderFromConfig(config, ctx);
  return Promise.all(items.map(async (item, index): Promise<PlaygroundResult> => {
    const t0 = Date.now();
    const input: GradeInput = { prompt: item.prompt ?? '', completion: item.completion, reference: item.reference, completionTokens: item.completionTokens };
    try {
      const r = await grader.grade(input);
      return { index, score: r.score, explanation: r.explanation, ...(r.details ? { details: r.details } : {}), ms: Date.now() - t0 };
    } catch (e) {
      return { index, score: 0, explanation: `error: ${(e as Error).message}`, error: (e as Error).message, ms: Date.now() - t0 };
    }
  }));
}
