import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradeFormat, languageMixing } from '../../src-main/services/graders/format.ts';
import { cosineLengthReward, repetitionPenalty, gradeRepetition, completionLength } from '../../src-main/services/graders/shaping.ts';

const P = 'What is 2+2? Answer in English.';

test('format: think block shapes', () => {
  const good = '<think>\n2+2 is 4.\n</think>\n<answer>4</answer>';
  assert.equal(gradeFormat(P, good).score, 1);
  assert.equal(gradeFormat(P, good, { think: 'tags' }).score, 1);
  assert.equal(gradeFormat(P, good, { think: 'forced' }).score, 0);
  // Template-forced: the prompt opened the block.
  const forced = '2+2 is 4.\n</think>\n<answer>4</answer>';
  assert.equal(gradeFormat(P, forced).score, 1);
  assert.equal(gradeFormat(P, forced, { think: 'forced' }).score, 1);
  assert.equal(gradeFormat(P, forced, { think: 'tags' }).score, 0);
  const fails: Array<[string, RegExp]> = [
    ['<think>2+2 is 4. <answer>4</answer>', /not closed/],
    ['<think>a</think><think>b</think><answer>4</answer>', /bad think tags/],
    ['<think>  </think><answer>4</answer>', /empty reasoning/],
    ['<think>2+2</think>   ', /nothing after/],
    ['Sure! <think>2+2</think><answer>4</answer>', /bad think tags/],
  ];
  for (const [c, why] of fails) {
    const r = gradeFormat(P, c, { answerTag: false });
    assert.equal(r.score, 0, c);
    assert.match(r.explanation, why, c);
  }
  assert.equal(gradeFormat(P, 'no think at all <answer>4</answer>', { think: 'none' }).score, 1);
});

test('format: answer tag', () => {
  assert.equal(gradeFormat(P, '<think>x</think> 4').score, 0);
  assert.match(gradeFormat(P, '<think>x</think> 4').explanation, /no <answer>/);
  assert.equal(gradeFormat(P, '<think>x</think> <answer> </answer>').score, 0);
  assert.equal(gradeFormat(P, '<think>x</think> <answer>4</answer><answer>5</answer>').score, 0);
  // An answer tag inside the reasoning does not count.
  assert.equal(gradeFormat(P, '<think><answer>4</answer></think> 4').score, 0);
  assert.equal(gradeFormat(P, '<think>x</think> <final>4</final>', { answerTagName: 'final' }).score, 1);
  assert.equal(gradeFormat(P, '<think>x</think> 4', { answerTag: false }).score, 1);
  // Partial credit: think ok, tag missing, language ok → 2/3.
  assert.ok(Math.abs(gradeFormat(P, '<think>x</think> 4', { partial: true }).score - 2 / 3) < 1e-12);
});

test('format: language mixing by script share', () => {
  const mixed = '<think>We need 2+2. 所以答案是四 and so on</think><answer>4</answer>';
  const r = gradeFormat(P, mixed);
  assert.equal(r.score, 0);
  assert.match(r.explanation, /outside latin/);
  // A small share is tolerated when the threshold allows it.
  assert.equal(gradeFormat(P, mixed, { language: { maxForeignShare: 0.5 } }).score, 1);
  // Greek letters and math are neutral.
  assert.equal(gradeFormat(P, '<think>Let θ = π/2, so sin θ = 1 ∑ ∫ 😀</think><answer>4</answer>').score, 1);
  // Target script from the prompt: a Chinese prompt expects Chinese.
  const zhPrompt = '二加二等于几？';
  assert.equal(gradeFormat(zhPrompt, '<think>二加二等于四</think><answer>4</answer>').score, 1);
  assert.equal(gradeFormat(zhPrompt, '<think>two plus two is four</think><answer>4</answer>').score, 0);
  // Japanese kana + kanji count as one script.
  assert.equal(languageMixing('これは漢字です', 'cjk', 0).ok, true);
  assert.equal(languageMixing('Привет world', 'latin', 0.02).ok, false);
  const s = languageMixing('abcdefghij' + '中', 'latin', 0.1);
  assert.ok(Math.abs(s.foreignShare - 1 / 11) < 1e-12);
  assert.equal(s.ok, true);
  assert.equal(languageMixing('abcdefghi' + '中', 'latin', 0.09).ok, false);
  // Region: only the answer is checked.
  assert.equal(gradeFormat(P, '<think>思考思考思考</think><answer>four</answer>', { language: { region: 'answer', script: 'latin' } }).score, 1);
  assert.equal(gradeFormat(P, '<think>思考思考思考</think><answer>four</answer>', { language: { region: 'reasoning', script: 'latin' } }).score, 0);
  assert.equal(gradeFormat(P, '<think>x</think><answer>4</answer>', { language: false }).details?.checks instanceof Array, true);
});

test('cosine length reward matches the open-r1 formula at the ends and the middle', () => {
  const o = { minValueWrong: -1, maxValueWrong: -0.5, minValueCorrect: 0.5, maxValueCorrect: 1, maxLength: 100 };
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-12, `${a} vs ${b}`);
  close(cosineLengthReward(0, true, o), 1);
  close(cosineLengthReward(100, true, o), 0.5);
  close(cosineLengthReward(50, true, o), 0.75);
  close(cosineLengthReward(0, false, o), -1);
  close(cosineLengthReward(100, false, o), -0.5);
  close(cosineLengthReward(50, false, o), -0.75);
  close(cosineLengthReward(200, true, o), 0.5);
  close(cosineLengthReward(200, true, { ...o, exceedPenalty: -2 }), -2);
  // open-r1 reference value at 25%: 0.5 + 0.5*0.5*(1+cos(pi/4))
  close(cosineLengthReward(25, true, o), 0.5 + 0.25 * (1 + Math.cos(Math.PI / 4)));
  // Monotone: shorter is better when correct, longer is better when wrong.
  for (let t = 0; t < 100; t += 10) {
    assert.ok(cosineLengthReward(t, true, o) >= cosineLengthReward(t + 10, true, o));
    assert.ok(cosineLengthReward(t, false, o) <= cosineLengthReward(t + 10, false, o));
  }
  assert.equal(completionLength('a b  c', 'words'), 3);
  assert.equal(completionLength('héllo', 'chars'), 5);
  assert.equal(completionLength('abcdefgh', 'tokens', 17), 17);
});

test('repetition penalty: fraction of repeated n-grams times the max penalty', () => {
  assert.equal(repetitionPenalty('').penalty, 0);
  assert.equal(repetitionPenalty('one two').penalty, 0);
  assert.equal(repetitionPenalty('the cat sat on the mat').penalty, 0);
  // "a b c a b c a b c": 3-grams: abc bca cab abc bca cab abc → 7 total, 3 distinct → (1 - 3/7) * -1
  const r = repetitionPenalty('a b c a b c a b c', { ngramSize: 3, maxPenalty: -1 });
  assert.equal(r.total, 7);
  assert.equal(r.distinct, 3);
  assert.ok(Math.abs(r.penalty - -(4 / 7)) < 1e-12);
  assert.ok(Math.abs(repetitionPenalty('A b C a B c a b c', { maxPenalty: -0.5 }).penalty - -(2 / 7)) < 1e-12);
  const loop = 'I think so. '.repeat(200);
  assert.ok(gradeRepetition(loop).score < -0.9);
  assert.throws(() => repetitionPenalty('x y z', { maxPenalty: 1 }));
});
