// The native addon from Node: asynchronous load with progress, streaming generation that
// leaves the event loop free, cancel, logits, info, unload, and errors as JS errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, resolve } from 'node:path';
import { native, type LoadProgress } from '../../src-main/engine/native.ts';

const gen = join(resolve(import.meta.dirname, '../..'), 'tests/fixtures/generated');
const prompt = [151644, 872, 198, 9707, 11, 1246, 525, 498, 30, 151645, 198];

test('load reports progress and info describes the model', async () => {
  const progress: LoadProgress[] = [];
  const m = await native().loadModel(join(gen, 'qwen2-tiny-q8_0.gguf'), { threads: 2, context: 128 }, (p) => progress.push(p));
  try {
    assert.ok(progress.length >= 2);
    assert.equal(progress.at(-1)!.fraction, 1);
    for (let i = 1; i < progress.length; i++) assert.ok(progress[i].fraction >= progress[i - 1].fraction);
    const info = m.info();
    assert.equal(info.architecture, 'qwen2');
    assert.equal(info.format, 'gguf');
    assert.equal(info.context, 128);
    assert.equal(info.threads, 2);
    assert.ok(info.dtypeMix.q8_0 > 0 && info.dtypeMix.f32 > 0);
    assert.equal(Object.values(info.dtypeMix).reduce((a, b) => a + b, 0), info.parameters);
    assert.ok(info.kvBytes > 0 && info.decodeBytes > 0 && info.decodeBytes <= info.weightBytes);
    assert.equal(info.kvType, 'f16');  // the dense family's default
  } finally {
    await m.unload();
  }
});

test('generation streams tokens without blocking the event loop, and cancels', async () => {
  const m = await native().loadModel(join(gen, 'qwen2-tiny'), { threads: 2 });
  try {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const streamed: number[] = [];
    const [r] = await m.generate([{ prompt, maxTokens: 64, temperature: 0.8, seed: 3, ignoreEos: true }], (i, t) => {
      assert.equal(i, 0);
      streamed.push(t);
    });
    clearInterval(timer);
    assert.deepEqual(streamed, r.tokens);
    assert.equal(r.tokens.length, 64);
    assert.equal(r.finishReason, 'length');
    assert.ok(ticks > 0, 'the event loop ran while generating');
    // cancel from the token callback
    let seen = 0;
    const [c] = await m.generate([{ prompt, maxTokens: 1000, ignoreEos: true }], () => {
      if (++seen === 3) m.cancel();
    });
    assert.equal(c.finishReason, 'cancelled');
    assert.ok(c.tokens.length >= 3 && c.tokens.length < 1000);
    // several requests decode together; each streams under its own index
    const per = new Map<number, number[]>();
    const rs = await m.generate(
      [0, 1, 2].map((seed) => ({ prompt, maxTokens: 5, seed, ignoreEos: true })),
      (i, t) => per.set(i, [...(per.get(i) ?? []), t]),
    );
    rs.forEach((x, i) => assert.deepEqual(per.get(i), x.tokens));
  } finally {
    await m.unload();
  }
});

test('logits of every position, and errors become JS errors', async () => {
  const m = await native().loadModel(join(gen, 'qwen3-tiny'), { kvType: 'f32' });
  try {
    const rows = await m.logits(prompt.slice(0, 4), true);
    assert.equal(rows.length, 4);
    assert.equal(rows[0].length, m.info().vocabSize);
    const last = await m.logits(prompt.slice(0, 4));
    assert.deepEqual(Array.from(last[0]), Array.from(rows[3]));
    await assert.rejects(m.logits([m.info().vocabSize + 5]), /outside the vocabulary/);
    await assert.rejects(m.generate([{ prompt: [] }]), /the prompt is empty/);
    await assert.rejects(m.generate([{ prompt, topP: 0 }]), /top_p/);
    assert.throws(() => m.generate([{ prompt: 'hello' as unknown as number[] }]), /prompt must be an array of token ids/);
  } finally {
    await m.unload();
  }
  assert.throws(() => m.logits([1]), /the model was unloaded/);
  await assert.rejects(native().loadModel('/nonexistent/x.gguf'), /\/nonexistent\/x.gguf: cannot open/);
  await assert.rejects(native().loadModel(gen, {}), /no model.safetensors|config.json/);
  assert.throws(() => native().quantizeRows('q9_9', new Float32Array(32), 32), /unknown dtype/);
  assert.throws(() => native().quantizeRows('q4_K', new Float32Array(64), 64), /not a multiple of the q4_K block/);
});

test('quantizeRows and dequantizeRows round-trip GGUF blocks', () => {
  const x = new Float32Array(512).map((_, i) => Math.sin(i * 0.37) * 3);
  for (const [t, tol] of [['q8_0', 0.02], ['q6_K', 0.08], ['q4_K', 0.35], ['f16', 0.002]] as const) {
    const q = native().quantizeRows(t, x, 256);
    const y = native().dequantizeRows(t, q, 256);
    let err = 0;
    for (let i = 0; i < x.length; i++) err = Math.max(err, Math.abs(x[i] - y[i]));
    assert.ok(err < tol, `${t}: max error ${err}`);
  }
  assert.equal(native().quantizeRows('q8_0', x, 256).length, 2 * 8 * 34);
});
