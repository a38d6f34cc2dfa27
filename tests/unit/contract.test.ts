// The contract's boundary: dispatch validates every payload before a handler sees it, and every
// failure comes back as an {error} envelope, never as a throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApiError, channels, dispatch, events, defaultSettings, Settings, type Handlers } from '../../src-main/contract/api.ts';

function handlers(overrides: Partial<Handlers>): Handlers {
  const fail = () => {
    throw new Error('not called in this test');
  };
  const all = Object.fromEntries(Object.keys(channels).map((c) => [c, fail])) as unknown as Handlers;
  return { ...all, ...overrides };
}

test('a valid request reaches its handler with the parsed payload', async () => {
  let seen: unknown;
  const h = handlers({ 'chat.send': (p) => ((seen = p), { user: {} as never, assistant: {} as never }) });
  const r = await dispatch(h, 'chat.send', { conversationId: 3, content: 'hi', parentId: null });
  assert.equal(r.error, undefined);
  assert.deepEqual(seen, { conversationId: 3, content: 'hi', parentId: null });
});

test('unknown channels, bad payloads and extra fields are refused before any handler runs', async () => {
  const h = handlers({});
  assert.equal((await dispatch(h, 'chat.nuke', {})).error?.code, 'invalid_request');
  assert.equal((await dispatch(h, '__proto__', {})).error?.code, 'invalid_request');
  assert.equal((await dispatch(h, 'toString', {})).error?.code, 'invalid_request');
  const bad = await dispatch(h, 'chat.send', { conversationId: 1.5, content: '' });
  assert.equal(bad.error?.code, 'invalid_request');
  assert.match(bad.error!.message, /conversationId/);
  assert.match(bad.error!.message, /content/);
  assert.equal((await dispatch(h, 'models.add', { path: '/x', shell: 'rm -rf' })).error?.code, 'invalid_request');
  assert.equal((await dispatch(h, 'settings.set', { threads: -1 })).error?.code, 'invalid_request');
  assert.equal((await dispatch(h, 'settings.set', { sampling: { ...defaultSettings.sampling, topP: 0 } })).error?.code, 'invalid_request');
});

test('handler failures become envelopes: ApiError keeps its code, anything else is internal', async () => {
  const h = handlers({
    'chat.get': () => {
      throw new ApiError('not_found', 'no conversation 9');
    },
    'chat.list': async () => {
      throw new TypeError('boom');
    },
  });
  assert.deepEqual(await dispatch(h, 'chat.get', { id: 9 }), { error: { code: 'not_found', message: 'no conversation 9' } });
  assert.deepEqual(await dispatch(h, 'chat.list', {}), { error: { code: 'internal', message: 'boom' } });
});

test('the defaults are valid under their own schemas; R1 sampling is the default', () => {
  assert.deepEqual(Settings.parse(defaultSettings), defaultSettings);
  assert.equal(defaultSettings.sampling.temperature, 0.6);
  assert.equal(defaultSettings.sampling.topP, 0.95);
  for (const [name, schema] of Object.entries(events)) assert.ok(schema, name);
});
