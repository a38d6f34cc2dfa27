// `aha train grpo` end to end on a tiny model: JSON step metrics, a skipped bad line, checkpoints
// and the final adapter; a run stopped after 2 steps and resumed to 4 ends with exactly the
// adapter (and the step metrics) of an uninterrupted 4-step run; a resume that changes the run fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { aha, root } from './helpers.ts';

const model = join(root, 'tests/fixtures/generated/qwen2-tiny');

interface StepEvent {
  event: 'step';
  step: number;
  reward: { mean: number; std: number };
  rewards: Record<string, { mean: number; std: number }>;
  gradNorm: number;
  loss: number;
  completionLength: { mean: number; max: number };
}

test('aha train grpo: steps, checkpoints, the adapter, and an exact resume', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-train-'));
  const data = join(dir, 'prompts.jsonl');
  writeFileSync(
    data,
    [
      JSON.stringify({ prompt: 'What is 2 + 3?', reference: '5' }),
      '{"prompt": 7}',
      JSON.stringify({ prompt: 'What is 4 + 4?', reference: '8', system_prompt: 'Answer briefly.' }),
      JSON.stringify({ prompt: 'What is 9 - 1?', reference: '8' }),
    ].join('\n') + '\n',
  );
  // A vowel anywhere: some random completions have one, some do not.
  const graders = join(dir, 'graders.json');
  writeFileSync(graders, JSON.stringify([{ weight: 1, grader: { name: 'vowel', version: 1, kind: 'regex', options: { pattern: '[aeiou]' } } }]));
  const common = ['--model', model, '--data', data, '--grader', 'math:0.5', '--grader-config', graders, '--num-generations', '4', '--prompts-per-step', '2', '--max-tokens', '4', '--lr', '1e-2', '--seed', '3', '--json', '--threads', '2'];
  const steps = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'step') as StepEvent[];

  const a = aha('train', 'grpo', ...common, '--out', join(dir, 'a'), '--steps', '4');
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stderr, /skipped 1 of 4 lines of .*prompts\.jsonl: line 2: needs a non-empty "prompt" string/);
  const sa = steps(a.stdout);
  assert.deepEqual(sa.map((s) => s.step), [1, 2, 3, 4]);
  for (const s of sa) {
    assert.ok(s.completionLength.max <= 4 && Number.isFinite(s.loss));
    assert.deepEqual(Object.keys(s.rewards).sort(), ['math', 'vowel']);
  }
  assert.ok(sa.some((s) => s.reward.std > 0 && s.gradNorm > 0), 'some step has a reward spread and a gradient');
  assert.ok(existsSync(join(dir, 'a', 'adapter_model.safetensors')) && existsSync(join(dir, 'a', 'checkpoints', 'step-000004', 'trainer_state.json')));

  const b1 = aha('train', 'grpo', ...common, '--out', join(dir, 'b'), '--steps', '2');
  assert.equal(b1.code, 0, b1.stderr);
  const b2 = aha('train', 'grpo', ...common, '--out', join(dir, 'b'), '--steps', '4', '--resume');
  assert.equal(b2.code, 0, b2.stderr);
  assert.deepEqual(steps(b2.stdout).map((s) => [s.step, s.loss, s.reward.mean]), sa.slice(2).map((s) => [s.step, s.loss, s.reward.mean]));
  assert.ok(readFileSync(join(dir, 'b', 'adapter_model.safetensors')).equals(readFileSync(join(dir, 'a', 'adapter_model.safetensors'))), 'the resumed adapter is the uninterrupted one');

  const changed = aha('train', 'grpo', ...common, '--out', join(dir, 'b'), '--steps', '6', '--resume', '--lr', '1e-3');
  assert.equal(changed.code, 1);
  assert.match(changed.stderr, /--resume: lr 0\.001 differs from the run's 0\.01/);
  const noGrader = aha('train', 'grpo', '--model', model, '--data', data, '--out', join(dir, 'c'));
  assert.equal(noGrader.code, 2);
  assert.match(noGrader.stderr, /--grader LIST \(or --grader-config FILE\) is required/);
});

test('aha train grpo on a DeepSeek (MLA + MoE): rollouts with the adapter, steps with a gradient, an exact resume', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aha-grpo-ds-'));
  const data = join(dir, 'prompts.jsonl');
  writeFileSync(data, [JSON.stringify({ prompt: 'What is 2 + 3?', reference: '5' }), JSON.stringify({ prompt: 'What is 9 - 1?', reference: '8' })].join('\n') + '\n');
  const graders = join(dir, 'graders.json');
  writeFileSync(graders, JSON.stringify([{ weight: 1, grader: { name: 'vowel', version: 1, kind: 'regex', options: { pattern: '[A-Z]' } } }]));  // a capital: in about half of its random completions
  const common = ['--model', join(root, 'tests/fixtures/generated-deepseek/deepseek-v3-tiny'), '--data', data, '--grader-config', graders, '--num-generations', '4',
    '--prompts-per-step', '2', '--max-tokens', '4', '--lr', '1e-2', '--seed', '3', '--json', '--threads', '2'];
  const steps = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l)).filter((e) => e.event === 'step') as StepEvent[];
  const a = aha('train', 'grpo', ...common, '--out', join(dir, 'a'), '--steps', '3');
  assert.equal(a.code, 0, a.stderr);
  const sa = steps(a.stdout);
  assert.deepEqual(sa.map((s) => s.step), [1, 2, 3]);
  assert.ok(sa.some((s) => s.reward.std > 0 && s.gradNorm > 0), 'some step has a reward spread and a gradient');
  const b1 = aha('train', 'grpo', ...common, '--out', join(dir, 'b'), '--steps', '1');
  assert.equal(b1.code, 0, b1.stderr);
  const b2 = aha('train', 'grpo', ...common, '--out', join(dir, 'b'), '--steps', '3', '--resume');
  assert.equal(b2.code, 0, b2.stderr);
  assert.deepEqual(steps(b2.stdout).map((s) => [s.step, s.loss, s.reward.mean]), sa.slice(1).map((s) => [s.step, s.loss, s.reward.mean]));
});
