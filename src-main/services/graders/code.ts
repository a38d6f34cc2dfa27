/**
 * Code grader: run the completion's LAST fenced code block (```python / ```py or ```js / ```javascript; an untagged block
 * takes the reference's or the options' language) against the item's tests in the sandbox (sandbox.ts).
 *
 * Reference (an object, or the same as a JSON string):
 *   { language?: 'python' | 'javascript',
 *     tests?: string[],                          each snippet runs in its own process after the solution (assertions);
 *                                                passes when the process exits 0 AND prints a per-run random sentinel
 *                                                written after the snippet (so `sys.exit(0)` in the solution fails)
 *     cases?: { input: string; output: string }[] } stdin → stdout: passes on exit 0 and output equal up to trailing
 *                                                whitespace on each line and trailing blank lines
 * Score = tests passed / tests run. No code block, a language without runtime, or no tests: 0 with the reason.
 * Throws SandboxUnavailableError when the sandbox cannot be built (never runs code unsandboxed).
 */
import { randomBytes } from 'node:crypto';
import { afterThink } from './text.ts';
import { sharedSandboxPool, type Runtime, type SandboxLimits, type SandboxPool, type SandboxResult } from './sandbox.ts';
import type { GradeResult } from './types.ts';

export interface CodeReference {
  language?: Runtime;
  tests?: string[];
  cases?: Array<{ input: string; output: string }>;
}

export interface CodeOptions {
  /** Language for an untagged block when the reference names none. Default 'python'. */
  language?: Runtime;
  limits?: SandboxLimits;
}

const LANGS: Record<string, Runtime> = { python: 'python', py: 'python', python3: 'python', js: 'javascript', javascript: 'javascript', node: 'javascript', nodejs: 'javascript' };

/** The last fenced block after `</think>`: its code and tag language (null when untagged or unknown tag). */
export function extractLastCodeBlock(completion: string): { code: string; language: Runtime | null; tag: string } | null {
  const s = afterThink(completion);
  const re = /```([A-Za-z0-9_+-]*)[^\n]*\n([\s\S]*?)```/g;
  let last: RegExpExecArray | null = null;
  for (let m = re.exec(s); m; m = re.exec(s)) last = m;
  if (!last) return null;
  const tag = last[1].toLowerCase();
  return { code: last[2], language: LANGS[tag] ?? null, tag };
}

export function parseCodeReference(reference: unknown): CodeReference | null {
  let r = reference;
  if (typeof r === 'string') {
    try { r = JSON.parse(r); } catch { return null; }
  }
  if (!r || typeof r !== 'object') return null;
  const o = r as Record<string, unknown>;
  const out: CodeReference = {};
  if (o.language !== undefined) {
    if (o.language !== 'python' && o.language !== 'javascript') return null;
    out.language = o.language;
  }
  if (o.tests !== undefined) {
    if (!Array.isArray(o.tests) || !o.tests.every((t) => typeof t === 'string')) return null;
    out.tests = o.tests as string[];
  }
  if (o.cases !== undefined) {
    if (!Array.isArray(o.cases) || !o.cases.every((c) => c && typeof c === 'object' && typeof c.input === 'string' && typeof c.output === 'string')) return null;
    out.cases = o.cases as Array<{ input: string; output: string }>;
  }
  return out;
}

export function sameOutput(got: string, want: string): boolean {
  const norm = (s: string) => s.replace(/\r\n/g, '\n').split('\n').map((l) => l.replace(/\s+$/, '')).join('\n').replace(/\n+$/, '');
  return norm(got) === norm(want);
}

export interface CodeTestResult { name: string; passed: boolean; why: string }

function failure(r: SandboxResult): string {
  if (r.timedOut) return 'timed out';
  if (r.outputTruncated) return 'output over the limit';
  if (r.signal) return `killed by ${r.signal}`;
  const tail = r.stderr.trim().split('\n').slice(-1)[0] ?? '';
  return `exit ${r.exitCode}${tail ? `: ${tail.slice(0, 200)}` : ''}`;
}

export async function gradeCode(completion: string, reference: unknown, options: CodeOptions = {}, pool: SandboxPool = sharedSandboxPool()): Promise<GradeResult> {
  const ref = parseCodeReference(reference);
  if (!ref) return { score: 0, explanation: 'no usable reference (expected { language?, tests?: string[], cases?: {input, output}[] })' };
  const total = (ref.tests?.length ?? 0) + (ref.cases?.length ?? 0);
  if (total === 0) return { score: 0, explanation: 'the reference has no tests' };
  const block = extractLastCodeBlock(completion);
  if (!block) return { score: 0, explanation: 'no fenced code block' };
  if (block.language === null && block.tag !== '') return { score: 0, explanation: `code block in an unsupported language "${block.tag}"` };
  const language = block.language ?? ref.language ?? options.language ?? 'python';
  const file = language === 'python' ? 'main.py' : 'main.js';
  const jobs: Array<Promise<CodeTestResult>> = [];
  (ref.tests ?? []).forEach((test, i) => {
    const sentinel = `__aha_pass_${randomBytes(12).toString('hex')}__`;
    const tail = language === 'python' ? `\n\n${test}\n\nprint(${JSON.stringify(sentinel)}, flush=True)\n` : `\n;\n${test}\n;\nconsole.log(${JSON.stringify(sentinel)});\n`;
    jobs.push(pool.run({ runtime: language, files: { [file]: block.code + tail }, main: file, limits: options.limits }).then((r) => {
      const lines = r.stdout.trimEnd().split('\n');
      const passed = r.exitCode === 0 && !r.timedOut && !r.outputTruncated && lines[lines.length - 1] === sentinel;
      return { name: `test ${i + 1}`, passed, why: passed ? 'passed' : r.exitCode === 0 && !r.timedOut ? 'exited before the test finished' : failure(r) };
    }));
  });
  (ref.cases ?? []).forEach((c, i) => {
    jobs.push(pool.run({ runtime: language, files: { [file]: block.code }, main: file, stdin: c.input, limits: options.limits }).then((r) => {
      const ok = r.exitCode === 0 && !r.timedOut && !r.outputTruncated;
      const passed = ok && sameOutput(r.stdout, c.output);
      return { name: `case ${i + 1}`, passed, why: passed ? 'passed' : ok ? `wrong output ${JSON.stringify(r.stdout.slice(0, 100))}` : failure(r) };
    }));
  });
  const results = await Promise.all(jobs);
  const passed = results.filter((r) => r.passed).length;
  const failed = results.filter((r) => !r.passed).slice(0, 3).map((r) => `${r.name}: ${r.why}`);
  return {
    score: passed / total,
    explanation: `${passed}/${total} tests passed (${language})${failed.length ? `; ${failed.join('; ')}` : ''}`,
    details: { language, tests: results },
  };
}
