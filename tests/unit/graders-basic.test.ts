import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradeExact, gradeRegex, gradeMultipleChoice, extractChoice } from '../../src-main/services/graders/basic.ts';
import { gradeCountdown, checkCountdown } from '../../src-main/services/graders/countdown.ts';
import { parseExpression, evalRational, evalFloat } from '../../src-main/services/graders/expr.ts';

test('exact match: sources, case, whitespace', () => {
  assert.equal(gradeExact('<think>hmm</think>  Paris ', 'paris').score, 1);
  assert.equal(gradeExact('<think>hmm</think> Paris', 'paris', { caseSensitive: true }).score, 0);
  assert.equal(gradeExact('<think>Paris</think> London', 'Paris').score, 0);
  assert.equal(gradeExact('blah <answer>New   York</answer>', 'new york', { source: 'answer-tag' }).score, 1);
  assert.equal(gradeExact('blah New York', 'new york', { source: 'answer-tag' }).score, 0);
  assert.equal(gradeExact('\\boxed{42}', '42', { source: 'boxed' }).score, 1);
  assert.equal(gradeExact('a  b', 'a b', { normalizeWhitespace: false }).score, 0);
  assert.equal(gradeExact('x', undefined).score, 0);
});

test('regex: match and extract modes', () => {
  assert.equal(gradeRegex('The result: 17 apples', null, { pattern: '\\d+ apples' }).score, 1);
  assert.equal(gradeRegex('The result: 17 pears', null, { pattern: '\\d+ apples' }).score, 0);
  assert.equal(gradeRegex('Result: 17, Result: 18', '18', { pattern: 'Result: (\\d+)', mode: 'extract' }).score, 1);
  assert.equal(gradeRegex('Result: 17, Result: 18', '17', { pattern: 'Result: (\\d+)', mode: 'extract' }).score, 0);
  assert.equal(gradeRegex('ANSWER=yes', 'YES', { pattern: 'answer=(\\w+)', flags: 'i', mode: 'extract' }).score, 1);
  assert.equal(gradeRegex('ANSWER=yes', 'YES', { pattern: 'answer=(\\w+)', flags: 'i', mode: 'extract', caseSensitive: true }).score, 0);
});

test('multiple choice extraction', () => {
  const cases: Array<[string, string | null]> = [
    ['The answer is (B).', 'B'],
    ['answer: C', 'C'],
    ['Answer: **D**', 'D'],
    ['\\boxed{B}', 'B'],
    ['\\boxed{(E)}', 'E'],
    ['\\boxed{\\text{A}}', 'A'],
    ['<answer>C</answer>', 'C'],
    ['<answer>(C) 42</answer>', 'C'],
    ['I considered (A) and (B) but the right one is option D', 'D'],
    ['Between (A) and (C), it is (C)', 'C'],
    ['<think>The answer is A</think>\nB', 'B'],
    ['Let me think.\n\nB.', 'B'],
    ['A lot of thinking without a letter', null],
    ['The answer is (F)', null],
    ['Answer: Because the derivative is zero', null],
  ];
  for (const [c, want] of cases) assert.equal(extractChoice(c), want, c);
  assert.equal(extractChoice('The answer is (F)', 'ABCDEF'), 'F');
  assert.equal(gradeMultipleChoice('The answer is (B).', 'B').score, 1);
  assert.equal(gradeMultipleChoice('The answer is (B).', '(b)').score, 1);
  assert.equal(gradeMultipleChoice('The answer is (B).', 'C').score, 0);
  assert.equal(gradeMultipleChoice('The answer is (B).', 'Z').score, 0);
});

test('expression parser: precedence, implicit products, refusals', () => {
  const v = (s: string) => { const p = parseExpression(s); assert.ok(p.ok, s); return evalFloat(p.node); };
  assert.equal(v('1+2*3'), 7);
  assert.equal(v('(1+2)*3'), 9);
  assert.equal(v('2^3^2'), 512);
  assert.equal(v('-2^2'), -4);
  assert.equal(v('2(3+1)'), 8);
  assert.equal(v('8/2/2'), 2);
  assert.equal(v('10-3-2'), 5);
  for (const bad of ['', '1+', '(1', '1)', 'yes', 'xy', '2 3', 'x2', 'alert(1)', 'constructor', '__proto__', '1;2', '`x`']) {
    assert.equal(parseExpression(bad).ok, false, bad);
  }
  const r = parseExpression('1/3*3');
  assert.ok(r.ok);
  assert.equal(evalRational(r.node)?.toString(), '1');
  const z = parseExpression('1/(2-2)');
  assert.ok(z.ok);
  assert.equal(evalRational(z.node), null);
});

test('countdown: each number at most once, exact arithmetic, safe parse', () => {
  const ref = { numbers: [3, 7, 25, 50], target: 75 };
  const ok: string[] = ['25 + 50', '(25+50)', '50 + 25 = 75', '75 = 50 + 25', '3 * 25', '$3 \\times 25$', '(50 - 25) * 3', '3 * (50 - 25)'];
  for (const e of ok) assert.equal(checkCountdown(e, ref).ok, true, e);
  const bad: Array<[string, RegExp]> = [
    ['25 + 25 + 25', /more often/],
    ['75', /./],
    ['50 + 26 - 1', /not among/],
    ['25 + 50 = 76', /claims 76/],
    ['3 ** 25', /parse/],
    ['-3 + 78', /./],
    ['25 * 3 + 0', /not among/],
    ['50 + 25 + 7 - 7', /more often/],
    ['eval("75")', /characters/],
    ['50 + 7*3 + 3', /more often/],
    ['2(25)', /./],
    ['50 / (7 - 7)', /./],
  ];
  for (const [e, why] of bad) {
    const r = checkCountdown(e, ref);
    assert.equal(r.ok, false, e);
    assert.match(r.why, why, e);
  }
  // Exact rationals: (7/3)*... no float error. 1/3 * 3 * 25 = 25 exactly.
  assert.equal(checkCountdown('7 / 3 * 3 + 50 + 25 - 7', { numbers: [7, 3, 3, 50, 25, 7], target: 75 }).ok, true);
  assert.equal(checkCountdown('(1/3 + 1/3 + 1/3) * 75', { numbers: [1, 3, 1, 3, 1, 3, 75], target: 75 }).ok, true);
  assert.equal(checkCountdown('0.1 + 0.2', { numbers: [1, 2], target: 0 }).ok, false);
  // useAll
  assert.equal(checkCountdown('25 + 50', ref, { useAll: true }).ok, false);
  assert.equal(checkCountdown('(50 - 25) * 3', ref, { useAll: true }).ok, false);
  assert.equal(checkCountdown('(10 + 5) * (2 + 3)', { numbers: [2, 3, 5, 10], target: 75 }, { useAll: true }).ok, true);
  assert.equal(checkCountdown('(10 + 5) * 5', { numbers: [2, 3, 5, 10], target: 75 }, { useAll: true }).ok, false);
  // Unicode operators and the grader shape.
  assert.equal(checkCountdown('25 × 3', ref).ok, true);
  assert.equal(checkCountdown('150 ÷ 2', { numbers: [150, 2], target: 75 }).ok, true);
  assert.equal(gradeCountdown('<think>try 25+50</think><answer>25 + 50</answer>', ref).score, 1);
  assert.equal(gradeCountdown('<think>try</think><answer>25 + 49</answer>', ref).score, 0);
  assert.equal(gradeCountdown('<think>try</think><answer>25 + 7</answer>', ref, { formatScore: 0.1 }).score, 0.1);
  assert.equal(gradeCountdown('<think>try</think><answer>hello</answer>', ref, { formatScore: 0.1 }).score, 0);
  assert.equal(gradeCountdown('So:\n50 + 25 = 75\n', JSON.stringify(ref)).score, 1);
  assert.equal(gradeCountdown('nothing', ref).score, 0);
  assert.equal(gradeCountdown('<answer>1+1</answer>', { numbers: [1.5], target: 2 }).score, 0);
});
