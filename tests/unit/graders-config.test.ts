import { test } from 'node:test';
import assert from 'node:assert/strict';
import { graderFromConfig, parseGraderConfig, GraderConfigError, type GraderConfig } from '../../src-main/services/graders/config.ts';
import { composeGraders } from '../../src-main/services/graders/compose.ts';
import { runGrader } from '../../src-main/services/graders/playground.ts';
import { SandboxUnavailableError, type SandboxPool } from '../../src-main/services/graders/sandbox.ts';
import { extractLastCodeBlock, parseCodeReference, sameOutput } from '../../src-main/services/graders/code.ts';

const math: GraderConfig = { name: 'gsm8k-math', version: 1, kind: 'math' };
const fmt: GraderConfig = { name: 'r1-format', version: 2, kind: 'format', options: { think: 'either', answerTag: true } };
const r1: GraderConfig = {
  name: 'r1-zero', version: 1, kind: 'composite',
  options: { graders: [{ weight: 1, grader: math }, { weight: 0.5, grader: fmt }, { weight: 1, grader: { name: 'rep', version: 1, kind: 'repetition', options: { ngramSize: 3, maxPenalty: -1 } } }] },
};

test('configs are plain JSON: they survive a JSON round trip and build the same grader', async () => {
  const back = JSON.parse(JSON.stringify(r1)) as unknown;
  assert.deepEqual(parseGraderConfig(back), r1);
  const g = graderFromConfig(back);
  assert.equal(g.name, 'r1-zero');
  assert.equal(g.version, 1);
  assert.equal(g.kind, 'composite');
  const r = await g.grade({ prompt: 'What is 2+2?', completion: '<think>two and two</think><answer>4</answer>', reference: '4' });
  assert.equal(r.score, 1 + 0.5);
  const parts = (r.details as { parts: Array<{ name: string; score: number; weight: number }> }).parts;
  assert.deepEqual(parts.map((p) => [p.name, p.weight, p.score]), [['gsm8k-math', 1, 1], ['r1-format', 0.5, 1], ['rep', 1, 0]]);
  assert.match(r.explanation, /gsm8k-math ×1: 1\.000/);
  const wrong = await g.grade({ prompt: 'What is 2+2?', completion: '<think>two and two</think>5', reference: '4' });
  assert.equal(wrong.score, 0);
});

test('invalid configs fail with clear errors naming the field', () => {
  const cases: Array<[unknown, RegExp]> = [
    [null, /invalid grader config/],
    [{ name: 'x', version: 1, kind: 'nope' }, /kind/],
    [{ name: '', version: 1, kind: 'math' }, /name/],
    [{ name: 'x', version: 0, kind: 'math' }, /version/],
    [{ name: 'x', version: 1.5, kind: 'math' }, /version/],
    [{ name: 'x', version: 1, kind: 'math', options: { relTol: 'big' } }, /options\.relTol/],
    [{ name: 'x', version: 1, kind: 'math', options: { typo: true } }, /typo/],
    [{ name: 'x', version: 1, kind: 'regex', options: { pattern: '(' } }, /options\.pattern: invalid regular expression/],
    [{ name: 'x', version: 1, kind: 'regex', options: { pattern: 'a', flags: 'y' } }, /flags/],
    [{ name: 'x', version: 1, kind: 'repetition', options: { maxPenalty: 1 } }, /maxPenalty/],
    [{ name: 'x', version: 1, kind: 'composite', options: { graders: [] } }, /graders/],
    [{ name: 'x', version: 1, kind: 'composite', options: { graders: [{ weight: 1, grader: { name: 'y', version: 1, kind: 'code', options: { limits: { wallMs: 1 } } } }] } }, /options\.graders\.0\.grader\.options\.limits\.wallMs/],
    [{ name: 'x', version: 1, kind: 'cosine-length', options: { maxLength: 100 } }, /correctness/],
  ];
  for (const [cfg, why] of cases) {
    assert.throws(() => graderFromConfig(cfg), (e: unknown) => {
      assert.ok(e instanceof GraderConfigError, String(e));
      assert.match(e.message, why);
      assert.ok(e.issues.length > 0);
      return true;
    }, JSON.stringify(cfg));
  }
});

test('every kind builds from a config and grades', async () => {
  const P = 'q';
  const run = async (cfg: GraderConfig, completion: string, reference?: unknown, completionTokens?: number) =>
    (await graderFromConfig(cfg).grade({ prompt: P, completion, reference, completionTokens })).score;
  assert.equal(await run({ name: 'e', version: 1, kind: 'exact' }, '<think>x</think> Paris', 'paris'), 1);
  assert.equal(await run({ name: 'r', version: 1, kind: 'regex', options: { pattern: '\\d+' } }, 'abc'), 0);
  assert.equal(await run({ name: 'mc', version: 1, kind: 'multiple-choice' }, 'Answer: (C)', 'C'), 1);
  assert.equal(await run({ name: 'cd', version: 1, kind: 'countdown', options: { useAll: true } }, '<answer>(10+5)*(2+3)</answer>', { numbers: [2, 3, 5, 10], target: 75 }), 1);
  const cos: GraderConfig = { name: 'cos', version: 1, kind: 'cosine-length', options: { correctness: math, maxLength: 100, unit: 'tokens' } };
  assert.equal(await run(cos, '\\boxed{4}', '4', 0), 1);
  assert.equal(await run(cos, '\\boxed{4}', '4', 100), 0.5);
  assert.equal(await run(cos, '\\boxed{5}', '4', 0), -1);
  assert.equal(await run(cos, '\\boxed{5}', '4', 100), -0.5);
});

/** Math when the item has a plain reference, code when it has tests: a composite of both, as a mixed dataset would use. */
const r1CodeConfig: GraderConfig = { name: 'mixed', version: 1, kind: 'composite', options: { graders: [{ weight: 1, grader: math }, { weight: 1, grader: { name: 'code', version: 1, kind: 'code' } }] } };

test('composeGraders: a weighted sum that keeps every part', async () => {
  const c = composeGraders([
    { grader: { name: 'half', grade: () => ({ score: 0.5, explanation: 'h' }) }, weight: 2 },
    { grader: { name: 'async', grade: async () => ({ score: 1, explanation: 'a' }) }, weight: -0.25 },
  ]);
  const r = await c.grade({ prompt: '', completion: '' });
  assert.equal(r.score, 0.75);
  assert.deepEqual(r.details.parts.map((p) => p.explanation), ['h', 'a']);
  assert.throws(() => composeGraders([{ grader: { name: 'n', grade: () => ({ score: 0, explanation: '' }) }, weight: NaN }]));
});

test('playground: per-item results in order, a throwing item does not sink the batch', async () => {
  const out = await runGrader(math, [
    { completion: '\\boxed{4}', reference: '4' },
    { completion: 'I think 5', reference: '4' },
    { completion: 'nothing', reference: '4' },
  ]);
  assert.deepEqual(out.map((r) => [r.index, r.score]), [[0, 1], [1, 0], [2, 0]]);
  assert.match(out[1].explanation, /wrong: answer "5"/);
  // The sandbox unavailable (a pool that refuses): that item gets score 0 and the error, the others still grade.
  const refusing = { run: async () => { throw new SandboxUnavailableError('not here'); } } as unknown as SandboxPool;
  const mixed = await runGrader(r1CodeConfig, [
    { completion: '<think>x</think><answer>4</answer>', reference: '4' },
    { completion: '<think>x</think>```python\nprint(4)\n```', reference: { tests: ['assert True'] } },
  ], { pool: refusing });
  assert.equal(mixed[0].error, undefined);
  assert.equal(mixed[0].score, 1);
  assert.equal(mixed[1].score, 0);
  assert.match(mixed[1].error ?? '', /code sandbox unavailable: not here/);
  await assert.rejects(runGrader({ name: 'bad', version: 1, kind: 'nope' }, []), GraderConfigError);
  // A code config with an unparseable reference: score 0 with the reason, no throw.
  const code = await runGrader({ name: 'c', version: 1, kind: 'code' }, [{ completion: '```python\nprint(1)\n```', reference: 'not json' }]);
  assert.equal(code[0].score, 0);
  assert.match(code[0].explanation, /no usable reference/);
});

test('code block extraction and references', () => {
  const c = 'Try:\n```python\nprint(1)\n```\nBetter:\n```js\nconsole.log(2)\n```\n';
  assert.deepEqual(extractLastCodeBlock(c), { code: 'console.log(2)\n', language: 'javascript', tag: 'js' });
  assert.equal(extractLastCodeBlock('<think>```python\nx\n```</think> no code'), null);
  assert.equal(extractLastCodeBlock('```\nprint(3)\n```')?.language, null);
  assert.equal(extractLastCodeBlock('```rust\nfn main(){}\n```')?.tag, 'rust');
  assert.equal(extractLastCodeBlock('```Python3 title\nx=1\n```')?.language, 'python');
  assert.deepEqual(parseCodeReference('{"tests":["assert f(1)==1"]}'), { tests: ['assert f(1)==1'] });
  assert.equal(parseCodeReference({ tests: [1] }), null);
  assert.equal(parseCodeReference({ language: 'ruby' }), null);
  assert.equal(sameOutput('1 \n2\n\n', '1\n2'), true);
  assert.equal(sameOutput('1\n2', '1\n3'), false);
  assert.equal(sameOutput(' 1', '1'), false);
});
