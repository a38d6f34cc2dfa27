import { test } from 'node:test';
import assert from 'node:assert/strict';
import { extractAnswer, gradeMathAnswer, mathEqual } from '../../src-main/services/graders/math.ts';

const r = String.raw;

/**
 * The golden table: [gold, answer, verdict]. Each row was checked by hand; the verdicts are the spec of mathEqual.
 * Rows are grouped by the rule they exercise; every group has negatives.
 */
const GOLDEN: Array<[string, string, boolean]> = [
  // Integers, signs
  ['42', '42', true],
  ['42', '042', true],
  ['42', '43', false],
  ['42', '4.2', false],
  ['12', '1.2', false],
  ['12', '21', false],
  ['-3', '-3', true],
  ['-3', '3', false],
  ['3', '+3', true],
  ['-3', '−3', true],
  ['-3', '- 3', true],
  ['0', '-0', true],
  ['0', '0.0', true],
  ['0', '0.0001', false],
  ['1000000', '1000001', false],
  ['123456789012345678901234567890', '123456789012345678901234567891', false],
  ['123456789012345678901234567890', '123456789012345678901234567890', true],
  // Decimals
  ['0.5', '.5', true],
  ['0.5', '0.50', true],
  ['0.5', '0.05', false],
  ['2.5', '2.50', true],
  ['2.5', '25', false],
  ['3.0', '3', true],
  ['0.1', '0.10000', true],
  ['1.23', '1.32', false],
  ['1e3', '1000', true],
  ['1.5e-3', '0.0015', true],
  // Fractions
  ['1/2', '0.5', true],
  ['0.5', '1/2', true],
  [r`\frac{1}{2}`, '0.5', true],
  [r`\frac{1}{2}`, '.5', true],
  [r`\frac{1}{2}`, r`\dfrac{1}{2}`, true],
  [r`\frac{1}{2}`, r`\tfrac{1}{2}`, true],
  [r`\frac{1}{2}`, r`\frac12`, true],
  [r`\frac{1}{2}`, r`\frac{2}{4}`, true],
  [r`\frac{1}{2}`, '2/4', true],
  [r`\frac{1}{2}`, r`\frac{2}{1}`, false],
  [r`\frac{1}{2}`, '2', false],
  [r`\frac{1}{3}`, '0.333', false],
  [r`\frac{1}{3}`, '0.3333', false],
  [r`\frac{1}{3}`, '1/3', true],
  [r`\frac{2}{3}`, r`\frac{4}{6}`, true],
  [r`-\frac{1}{2}`, '-0.5', true],
  [r`-\frac{1}{2}`, r`\frac{-1}{2}`, true],
  [r`-\frac{1}{2}`, r`\frac{1}{-2}`, true],
  [r`-\frac{1}{2}`, '0.5', false],
  [r`\frac{3}{4}`, '3/4', true],
  [r`\frac{3}{4}`, '4/3', false],
  [r`\frac{7}{2}`, '3.5', true],
  [r`\frac{7}{2}`, r`3\frac{1}{2}`, true],
  [r`\frac{5}{2}`, r`2\frac12`, true],
  [r`-\frac{5}{2}`, r`-2\frac{1}{2}`, true],
  [r`\frac{7}{2}`, '3 1/2', false],
  [r`\frac{\frac{1}{2}}{2}`, '1/4', true],
  [r`\frac{1}{\frac{1}{2}}`, '2', true],
  ['10/4', '5/2', true],
  ['10/4', '2.5', true],
  ['22/7', r`\pi`, false],
  // Thousands separators
  ['1000', '1,000', true],
  ['1000', r`1{,}000`, true],
  ['1000', r`1\,000`, true],
  ['1000', '1 000', true],
  ['1000000', '1,000,000', true],
  ['1234567', '1,234,567', true],
  ['1234.5', '1,234.5', true],
  ['1000', '1,00', false],
  ['1000', '10,00', false],
  ['1,000', '1000', true],
  // Percent (choice: a % on either side accepts both the percent number and the fraction)
  ['50%', '50', true],
  ['50%', '0.5', true],
  [r`50\%`, '50', true],
  [r`50\%`, r`\frac{1}{2}`, true],
  ['50', '50%', true],
  ['0.5', '50%', true],
  ['50', '0.5', false],
  ['50%', '5', false],
  ['50%', '0.05', false],
  ['12.5%', '0.125', true],
  ['12.5%', '12.5', true],
  ['12.5%', '125', false],
  // Dollars and currency
  [r`\$5`, '5', true],
  ['5', r`\$5`, true],
  ['5', '$5', true],
  ['5', '5 dollars', true],
  ['5.00', r`\$5`, true],
  ['5', r`\$50`, false],
  ['18', r`\$18.00`, true],
  ['1200', r`\$1,200`, true],
  // Units and degrees
  ['5', r`5\text{ cm}`, true],
  ['5', '5 cm', true],
  ['5', r`5 \mbox{ cm}`, true],
  ['12', r`12\text{ cm}^2`, true],
  ['12', '12 cm^2', true],
  ['12', r`12 \text{square units}`, true],
  ['30', r`30^\circ`, true],
  ['30', r`30^{\circ}`, true],
  ['30', '30°', true],
  ['30', '30 degrees', true],
  [r`30^\circ`, '30', true],
  ['30', r`3^\circ`, false],
  ['5', '6 cm', false],
  ['7', '7 hours', true],
  ['7', '70 hours', false],
  [r`90^\circ`, r`\frac{\pi}{2}`, false],
  // Text wrappers and spacing
  ['5', r`\text{5}`, true],
  ['5', r`\mathrm{5}`, true],
  ['5', r`\textbf{5}`, true],
  ['5', '**5**', true],
  ['5', '5.', true],
  ['5', r`\!5`, true],
  [r`\frac{1}{2}`, r`\left(\frac{1}{2}\right)`, true],
  ['5', r`\displaystyle 5`, true],
  ['5', r`\boxed{5}`, true],
  ['5', r`\(5\)`, true],
  ['5', '$5$', true],
  ['5', r`\[5\]`, true],
  // Variable assignment
  ['5', 'x = 5', true],
  ['5', 'x=5', true],
  ['5', r`n = 5`, true],
  ['5', 'x = 6', false],
  ['x = 5', '5', true],
  [r`\frac{1}{2}`, r`y = \frac{1}{2}`, true],
  [r`30`, r`\theta = 30^\circ`, true],
  // Radicals
  [r`\sqrt{2}`, r`\sqrt2`, true],
  [r`\sqrt{2}`, '1.41421356', true],
  [r`\sqrt{2}`, '1.414', false],
  [r`\sqrt{2}`, '2', false],
  [r`2\sqrt{3}`, r`\sqrt{12}`, true],
  [r`2\sqrt{3}`, r`2 \sqrt 3`, true],
  [r`2\sqrt{3}`, r`3\sqrt{2}`, false],
  [r`\frac{\sqrt{3}}{2}`, r`\frac{1}{2}\sqrt{3}`, true],
  [r`\frac{\sqrt{3}}{2}`, r`\sqrt{3}/2`, true],
  [r`\frac{\sqrt{3}}{2}`, r`\frac{\sqrt{3}}{3}`, false],
  [r`\frac{\sqrt{2}}{2}`, r`\frac{1}{\sqrt{2}}`, true],
  [r`\sqrt[3]{8}`, '2', true],
  [r`\sqrt[3]{2}`, r`2^{1/3}`, true],
  [r`\sqrt[3]{2}`, r`\sqrt{2}`, false],
  [r`3+2\sqrt{2}`, r`2\sqrt{2}+3`, true],
  [r`3+2\sqrt{2}`, r`3-2\sqrt{2}`, false],
  [r`\sqrt{8}`, r`2\sqrt{2}`, true],
  ['sqrt(2)', r`\sqrt{2}`, true],
  [r`5\sqrt{5}`, r`\sqrt{125}`, true],
  // Pi
  [r`\pi`, '3.14159265', true],
  [r`\pi`, '3.14', false],
  [r`2\pi`, r`2 \pi`, true],
  [r`2\pi`, r`\pi \cdot 2`, true],
  [r`2\pi`, r`\pi`, false],
  [r`\frac{\pi}{2}`, r`\frac{1}{2}\pi`, true],
  [r`\frac{\pi}{2}`, r`\pi/2`, true],
  [r`\frac{\pi}{2}`, r`\frac{2}{\pi}`, false],
  [r`4\pi`, r`4\pi\text{ cm}^2`, true],
  [r`\frac{5\pi}{3}`, r`\frac{5}{3}\pi`, true],
  [r`\pi^2`, r`\pi \cdot \pi`, true],
  ['36\\pi', '36π', true],
  [r`\frac{3}{4}\pi`, r`0.75\pi`, true],
  // Powers and operators
  ['8', '2^3', true],
  ['8', '2^{3}', true],
  ['9', '2^3', false],
  ['512', '2^3^2', true],
  ['1/8', '2^{-3}', true],
  ['6', r`2 \times 3`, true],
  ['6', r`2 \cdot 3`, true],
  ['2', r`6 \div 3`, true],
  ['10', '2*5', true],
  ['1024', '2^{10}', true],
  ['100', '10^2', true],
  ['1000000', r`10^6`, true],
  ['1500000', r`1.5 \times 10^6`, true],
  ['1500000', r`1.5 \times 10^5`, false],
  // Infinity
  [r`\infty`, r`\infty`, true],
  [r`-\infty`, r`\infty`, false],
  // Tuples and intervals (ordered; brackets must match)
  ['(1,2)', '(1, 2)', true],
  ['(1,2)', '(2,1)', false],
  ['(1,2)', r`\left(1, 2\right)`, true],
  ['(1,2)', '[1,2]', false],
  ['(1,2)', '(1,2]', false],
  ['(1,2)', '(1,2,3)', false],
  [r`(\frac{1}{2}, 3)`, '(0.5, 3)', true],
  [r`(-1, \sqrt{2})`, r`(-1, \sqrt2)`, true],
  ['[0,1)', '[0, 1)', true],
  ['[0,1)', '[0,1]', false],
  [r`(-\infty, 3]`, r`(-\infty,3]`, true],
  [r`(-\infty, 3]`, r`(-\infty,3)`, false],
  [r`(-\infty, 3]`, r`x \in (-\infty, 3]`, true],
  ['(3, 4)', '(3,4)', true],
  ['(3, 4)', '(3,5)', false],
  ['(1,2)', '1,2', false],
  // Sets (unordered)
  [r`\{1,2\}`, r`\{2,1\}`, true],
  [r`\{1,2\}`, r`\{1,2\}`, true],
  [r`\{1,2\}`, r`\{1,3\}`, false],
  [r`\{1,2\}`, r`\{1,2,3\}`, false],
  [r`\{1,2\}`, '1, 2', true],
  [r`\{1,2\}`, '2, 1', true],
  [r`\{\frac{1}{2}, -3\}`, r`\{-3, 0.5\}`, true],
  [r`\{5\}`, '5', true],
  // Bare lists (unordered: roots)
  ['1, -2', '-2, 1', true],
  ['1, -2', '1, 2', false],
  ['1, -2', '1', false],
  [r`2, \frac{1}{3}`, r`\frac13, 2`, true],
  ['1,2,3', '3,2,1', true],
  ['1,2,3', '1,2,2', false],
  // Symbolic (variables)
  ['x+1', '1+x', true],
  ['2(x+1)', '2x+2', true],
  ['x^2-1', '(x-1)(x+1)', true],
  ['x^2+1', '(x+1)^2', false],
  [r`\frac{x}{2}`, '0.5x', true],
  ['2x', 'x2', false],
  ['a+b', 'b+a', true],
  ['a-b', 'b-a', false],
  [r`\sqrt{x^2}`, 'x', true],
  [r`3x^2`, r`3 x^{2}`, true],
  // Text answers
  ['B', '(B)', true],
  ['B', 'b', true],
  ['B', 'C', false],
  ['yes', r`\text{yes}`, true],
  ['yes', 'Yes', true],
  ['yes', 'no', false],
  ['Monday', r`\text{Monday}`, true],
  ['Monday', 'Tuesday', false],
  ['yes', 'sey', false],
  ['', '', false],
];

test(`golden math table (${GOLDEN.length} hand-checked cases)`, () => {
  assert.ok(GOLDEN.length >= 200, `need at least 200 golden cases, have ${GOLDEN.length}`);
  const failures: string[] = [];
  for (const [gold, answer, verdict] of GOLDEN) {
    const got = mathEqual(gold, answer);
    if (got !== verdict) failures.push(`gold ${JSON.stringify(gold)} answer ${JSON.stringify(answer)}: want ${verdict}, got ${got}`);
  }
  assert.deepEqual(failures, []);
});

test('the golden table is symmetric where equality is: swapping gold and answer gives the same verdict', () => {
  const failures: string[] = [];
  for (const [gold, answer, verdict] of GOLDEN) {
    if (mathEqual(answer, gold) !== verdict) failures.push(`${JSON.stringify(answer)} vs ${JSON.stringify(gold)}`);
  }
  assert.deepEqual(failures, []);
});

/** Extraction: [completion, the extracted answer, how]. */
const EXTRACT: Array<[string, string | null, string | null]> = [
  [r`So the result is \boxed{42}.`, '42', 'boxed'],
  [r`\boxed{\frac{1}{2}}`, r`\frac{1}{2}`, 'boxed'],
  [r`\boxed{\{1,2\}}`, r`\{1,2\}`, 'boxed'],
  [r`First \boxed{3}, no wait: \boxed{4}`, '4', 'boxed'],
  [r`\boxed{\frac{\sqrt{3}}{2}} done`, r`\frac{\sqrt{3}}{2}`, 'boxed'],
  [r`\fbox{7}`, '7', 'boxed'],
  [r`\boxed 7`, '7', 'boxed'],
  ['<answer>12</answer>', '12', 'answer-tag'],
  ['<answer> The answer is 12. </answer>', '12', 'answer-tag'],
  [r`<answer>so \boxed{9}</answer>`, '9', 'boxed'],
  ['Natalia sold 48/2 = 24 clips in May.\n#### 72', '72', 'gsm8k'],
  ['The answer is 3.5.', '3.5', 'answer-is'],
  ['Therefore, the final answer is $\\frac{3}{4}$. I hope it is correct.', '$\\frac{3}{4}$', 'answer-is'],
  ['answer: 17', '17', 'answer-is'],
  ['I computed 3 + 4 = 7 and then 7 * 2 = 14', '14', 'last-number'],
  ['It costs 1,250 dollars', '1,250', 'last-number'],
  ['about 3/4 of them', '3/4', 'last-number'],
  ['-5 is the value', '-5', 'last-number'],
  ['no numbers here', null, null],
  ['<think>maybe 5, or \\boxed{6}</think> The answer is 7.', '7', 'answer-is'],
  ['<think>the answer is 5</think> so 8', '8', 'last-number'],
  ['<think>\\boxed{5}</think>', null, null],
  ['Reasoning without closing, the answer is 9', '9', 'answer-is'],
];

test('answer extraction', () => {
  for (const [completion, want, via] of EXTRACT) {
    const got = extractAnswer(completion);
    assert.equal(got?.answer ?? null, want, completion);
    assert.equal(got?.via ?? null, via, completion);
  }
});

test('gradeMathAnswer: score, explanation, references written as solutions', () => {
  const ok = gradeMathAnswer('<think>2+2</think> The answer is \\boxed{4}.', '4');
  assert.equal(ok.score, 1);
  assert.match(ok.explanation, /correct.*"4".*boxed/);
  assert.equal(gradeMathAnswer('\\boxed{5}', '4').score, 0);
  assert.equal(gradeMathAnswer('#### 72', 'Natalia sold 48 + 24 = 72 clips.\n#### 72').score, 1);
  assert.equal(gradeMathAnswer('\\boxed{72}', 'So the total is \\boxed{72}').score, 1);
  assert.equal(gradeMathAnswer('\\boxed{72}', 72).score, 1);
  assert.equal(gradeMathAnswer('\\boxed{72}', { answer: '72' }).score, 1);
  assert.equal(gradeMathAnswer('\\boxed{72}', null).score, 0);
  assert.match(gradeMathAnswer('nothing', '1').explanation, /no final answer/);
  // Reasoning must be closed when asked.
  assert.equal(gradeMathAnswer('the answer is 4', '4', { allowUnclosedThink: false }).score, 0);
  assert.equal(gradeMathAnswer('</think>the answer is 4', '4', { allowUnclosedThink: false }).score, 1);
  // Tolerance is an option.
  assert.equal(gradeMathAnswer('\\boxed{3.14}', '\\pi').score, 0);
  assert.equal(gradeMathAnswer('\\boxed{3.14}', '\\pi', { relTol: 1e-3 }).score, 1);
});

test('hostile inputs stay fast and safe', () => {
  const t0 = Date.now();
  mathEqual('1', '('.repeat(5000) + '1' + ')'.repeat(5000));
  mathEqual('1', '\\frac{'.repeat(300));
  mathEqual('1', '9'.repeat(5000));
  mathEqual('2^999999', '1');
  extractAnswer('\\boxed{'.repeat(2000));
  extractAnswer('the answer is '.repeat(2000));
  assert.ok(Date.now() - t0 < 2000);
  assert.equal(mathEqual('constructor', 'constructor'), true);
  assert.equal(mathEqual('__proto__', 'x'), false);
});
