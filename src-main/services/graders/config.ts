/**
 * Grader configurations: plain JSON `{ name, version, kind, options }`, stored in SQLite by the datasets/graders store,
 * validated here with zod; graderFromConfig builds a runnable Grader or throws GraderConfigError saying what is wrong.
 */
import { z } from 'zod';
import { gradeMathAnswer, type MathOptions } from './math.ts';
import { compileRegex, gradeExact, gradeMultipleChoice, gradeRegex, type ExactOptions, type MultipleChoiceOptions, type RegexOptions } from './basic.ts';
import { gradeFormat, type FormatOptions } from './format.ts';
import { completionLength, COSINE_DEFAULTS, gradeCosineLength, gradeRepetition, type CosineLengthOptions, type RepetitionOptions } from './shaping.ts';
import { gradeCountdown, type CountdownOptions } from './countdown.ts';
import { gradeCode, type CodeOptions } from './code.ts';
import { composeGraders, type Grader } from './compose.ts';
import type { SandboxPool } from './sandbox.ts';

interface Base { name: string; version: number; description?: string }

export type GraderConfig =
  | (Base & { kind: 'math'; options?: MathOptions })
  | (Base & { kind: 'exact'; options?: ExactOptions })
  | (Base & { kind: 'regex'; options: RegexOptions })
  | (Base & { kind: 'multiple-choice'; options?: MultipleChoiceOptions })
  | (Base & { kind: 'format'; options?: FormatOptions })
  | (Base & { kind: 'cosine-length'; options: CosineLengthOptions & { correctness: GraderConfig; threshold?: number } })
  | (Base & { kind: 'repetition'; options?: RepetitionOptions })
  | (Base & { kind: 'countdown'; options?: CountdownOptions })
  | (Base & { kind: 'code'; options?: CodeOptions })
  | (Base & { kind: 'composite'; options: { graders: Array<{ weight: number; grader: GraderConfig }> } });

export type GraderKind = GraderConfig['kind'];

const base = {
  name: z.string().min(1).max(200),
  version: z.number().int().min(1),
  description: z.string().max(2000).optional(),
};
const source = z.enum(['answer-tag', 'boxed', 'after-think', 'whole']);
const script = z.enum(['latin', 'cjk', 'hangul', 'cyrillic', 'arabic', 'hebrew', 'devanagari', 'thai', 'other', 'auto']);
const limits = z.strictObject({
  wallMs: z.number().int().min(100).max(120_000).optional(),
  cpuSeconds: z.number().int().min(1).max(120).optional(),
  memoryBytes: z.number().int().min(16 * 2 ** 20).max(16 * 2 ** 30).optional(),
  fileBytes: z.number().int().min(4096).max(2 ** 30).optional(),
  maxProcesses: z.number().int().min(1).max(4096).optional(),
  maxOutputBytes: z.number().int().min(256).max(64 * 2 ** 20).optional(),
});
const regexOptions = z.strictObject({
  pattern: z.string().min(1).max(1000),
  flags: z.string().regex(/^[imsu]*$/, 'flags may only be i, m, s, u').optional(),
  mode: z.enum(['match', 'extract']).optional(),
  source: source.optional(),
  caseSensitive: z.boolean().optional(),
}).superRefine((o, ctx) => {
  try { compileRegex(o); } catch (e) { ctx.addIssue({ code: 'custom', path: ['pattern'], message: `invalid regular expression: ${(e as Error).message}` }); }
});
const cosineFields = {
  minValueWrong: z.number().optional(),
  maxValueWrong: z.number().optional(),
  minValueCorrect: z.number().optional(),
  maxValueCorrect: z.number().optional(),
  maxLength: z.number().int().min(1).optional(),
  unit: z.enum(['chars', 'words', 'tokens']).optional(),
  exceedPenalty: z.number().optional(),
};

export const graderConfigSchema: z.ZodType<GraderConfig> = z.lazy(() => z.discriminatedUnion('kind', [
  z.strictObject({ ...base, kind: z.literal('math'), options: z.strictObject({ relTol: z.number().min(0).max(1).optional(), absTol: z.number().min(0).optional(), allowUnclosedThink: z.boolean().optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('exact'), options: z.strictObject({ source: source.optional(), caseSensitive: z.boolean().optional(), normalizeWhitespace: z.boolean().optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('regex'), options: regexOptions }),
  z.strictObject({ ...base, kind: z.literal('multiple-choice'), options: z.strictObject({ choices: z.string().regex(/^[A-Z]{2,26}$/, 'choices are 2 to 26 capital letters').optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('format'), options: z.strictObject({
    think: z.enum(['tags', 'forced', 'either', 'none']).optional(),
    answerTag: z.boolean().optional(),
    answerTagName: z.string().regex(/^[a-z][a-z0-9_-]*$/).optional(),
    language: z.union([z.literal(false), z.strictObject({ script: script.optional(), maxForeignShare: z.number().min(0).max(1).optional(), region: z.enum(['answer', 'reasoning', 'all']).optional() })]).optional(),
    partial: z.boolean().optional(),
  }).optional() }),
  z.strictObject({ ...base, kind: z.literal('cosine-length'), options: z.strictObject({ ...cosineFields, correctness: graderConfigSchema, threshold: z.number().optional() }) }),
  z.strictObject({ ...base, kind: z.literal('repetition'), options: z.strictObject({ ngramSize: z.number().int().min(1).max(32).optional(), maxPenalty: z.number().max(0).optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('countdown'), options: z.strictObject({ useAll: z.boolean().optional(), formatScore: z.number().min(0).max(1).optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('code'), options: z.strictObject({ language: z.enum(['python', 'javascript']).optional(), limits: limits.optional() }).optional() }),
  z.strictObject({ ...base, kind: z.literal('composite'), options: z.strictObject({ graders: z.array(z.strictObject({ weight: z.number().finite(), grader: graderConfigSchema })).min(1).max(32) }) }),
]));

export class GraderConfigError extends Error {
  constructor(message: string, readonly issues: Array<{ path: string; message: string }>) {
    super(message);
    this.name = 'GraderConfigError';
  }
}

/** Validate a config (e.g. read back from SQLite); throws GraderConfigError listing every problem with its path. */
export function parseGraderConfig(config: unknown): GraderConfig {
  const r = graderConfigSchema.safeParse(config);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: i.path.map(String).join('.') || '(root)', message: i.message }));
  const name = config && typeof config === 'object' && typeof (config as { name?: unknown }).name === 'string' ? ` "${(config as { name: string }).name}"` : '';
  throw new GraderConfigError(`invalid grader config${name}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, issues);
}

export interface BuiltGrader extends Grader {
  version: number;
  kind: GraderKind;
  config: GraderConfig;
}

export interface RegistryContext { pool?: SandboxPool }

/** Build a runnable grader from a JSON config (validated first). */
export function graderFromConfig(config: unknown, ctx: RegistryContext = {}): BuiltGrader {
  const c = parseGraderConfig(config);
  return build(c, ctx);
}

function build(c: GraderConfig, ctx: RegistryContext): BuiltGrader {
  const made = (grade: Grader['grade']): BuiltGrader => ({ name: c.name, version: c.version, kind: c.kind, config: c, grade });
  switch (c.kind) {
    case 'math': return made((i) => gradeMathAnswer(i.completion, i.reference, c.options));
    case 'exact': return made((i) => gradeExact(i.completion, i.reference, c.options));
    case 'regex': return made((i) => gradeRegex(i.completion, i.reference, c.options));
    case 'multiple-choice': return made((i) => gradeMultipleChoice(i.completion, i.reference, c.options));
    case 'format': return made((i) => gradeFormat(i.prompt, i.completion, c.options));
    case 'repetition': return made((i) => gradeRepetition(i.completion, c.options));
    case 'countdown': return made((i) => gradeCountdown(i.completion, i.reference, c.options));
    case 'code': return made((i) => gradeCode(i.completion, i.reference, c.options, ctx.pool));
    case 'cosine-length': {
      const { correctness, threshold = 1, ...cos } = c.options;
      const inner = build(correctness, ctx);
      return made(async (i) => {
        const r = await inner.grade(i);
        const correct = r.score >= threshold;
        const len = completionLength(i.completion, cos.unit ?? COSINE_DEFAULTS.unit, i.completionTokens);
        const g = gradeCosineLength(len, correct, cos);
        return { score: g.score, explanation: `${g.explanation} [${inner.name}: ${r.explanation}]`, details: { correctness: r.score, length: len } };
      });
    }
    case 'composite': {
      const composed = composeGraders(c.options.graders.map((g) => ({ grader: build(g.grader, ctx), weight: g.weight })), c.name);
      return made((i) => composed.grade(i));
    }
  }
}
