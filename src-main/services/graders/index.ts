/** Rule graders for GRPO (DESIGN.md §5): pure functions of (prompt, completion, reference) → { score, explanation }. */
export type { GradeInput, GradeResult, GradeFn } from './types.ts';
export { gradeMathAnswer, mathEqual, extractAnswer, parseAnswer, mathGrader, type MathOptions, type MathValue } from './math.ts';
export { gradeExact, gradeRegex, gradeMultipleChoice, extractChoice, type ExactOptions, type RegexOptions, type MultipleChoiceOptions, type AnswerSource } from './basic.ts';
export { gradeFormat, languageMixing, scriptCounts, type FormatOptions, type ScriptName } from './format.ts';
export { cosineLengthReward, gradeCosineLength, repetitionPenalty, gradeRepetition, completionLength, type CosineLengthOptions, type RepetitionOptions } from './shaping.ts';
export { gradeCountdown, checkCountdown, extractCountdownExpression, type CountdownReference, type CountdownOptions } from './countdown.ts';
export { gradeCode, extractLastCodeBlock, parseCodeReference, type CodeReference, type CodeOptions } from './code.ts';
export { runSandboxed, sandboxSupport, SandboxPool, sharedSandboxPool, SandboxUnavailableError, SANDBOX_DEFAULTS, type SandboxMode, type SandboxLimits, type SandboxRequest, type SandboxResult, type Runtime } from './sandbox.ts';
export { composeGraders, type ComposedGrader, type Grader, type GraderPart, type ComposedResult } from './compose.ts';
export { graderFromConfig, parseGraderConfig, graderConfigSchema, GraderConfigError, type GraderConfig, type GraderKind, type BuiltGrader } from './config.ts';
export { runGrader, type PlaygroundItem, type PlaygroundResult } from './playground.ts';
export { parseExpression, evalFloat, evalRational, Rational } from './expr.ts';
