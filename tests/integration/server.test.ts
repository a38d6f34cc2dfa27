// `aha serve`'s services end to end with the scripted tiny R1 model: the OpenAI-compatible API
// through the official `openai` client (streaming and not), the WebSocket contract (a chat with
// streamed reasoning, stop, regenerate into a branch), OpenAI-style errors, the API key, and an
// engine host killed mid-answer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import WebSocket from 'ws';
import { createApp, type App } from '../../src-main/services/app.ts';
import { forkHost } from '../../src-main/engine-host/client.ts';
import { serve, type RunningServer } from '../../src-main/server/server.ts';
import { makeScriptedModel, SCRIPT_ANSWER, SCRIPT_REASONING } from '../fixtures/make-scripted-model.ts';
import type { EventName, Message, ModelEntry } from '../../src-main/contract/api.ts';

const MODEL_NAME = 'R1 Scripted Tiny';
let dir: string;
let app: App;
let server: RunningServer;
let model: ModelEntry;
/** A random-weight model: it writes until max tokens, so there is time to stop or kill it. */
let rambler: ModelEntry;

before(async () => {
  const path = makeScriptedModel();
  dir = mkdtempSync(join(tmpdir(), 'aha-serve-'));
  app = await createApp({ dataDir: join(dir, 'data'), spawnHost: forkHost(), shell: 'server', home: join(dir, 'home'), defaultModel: false });
  server = await serve(app, { host: '127.0.0.1', port: 0, rendererDir: join(dir, 'no-renderer') });
  model = app.library.add(path);
  rambler = app.library.add(join(import.meta.dirname, '../fixtures/generated/llama-tiny-f32.gguf'));
  await app.engine.load(model);
});

after(async () => {
  await server?.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

function client() {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}

test('GET /v1/models lists the library', async () => {
  const list = await client().models.list();
  assert.deepEqual(list.data.map((m) => m.id).sort(), [MODEL_NAME, 'llama-tiny'].sort());
});

test('chat completion (not streamed) returns the reasoning apart from the answer', async () => {
  const r = await client().chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'hi' }] });
  const msg = r.choices[0].message as typeof r.choices[0]['message'] & { reasoning_content?: string };
  assert.equal(msg.content, SCRIPT_ANSWER);
  assert.equal(msg.reasoning_content, SCRIPT_REASONING);
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(r.usage && r.usage.prompt_tokens > 0 && r.usage.completion_tokens === 38, JSON.stringify(r.usage));
});

test('chat completion streamed: reasoning_content deltas, then content, then [DONE] with usage', async () => {
  const stream = await client().chat.completions.create({
    model: MODEL_NAME,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
    temperature: 0.6,
  });
  let reasoning = '';
  let content = '';
  let reasoningDone = false;
  let chunks = 0;
  let finish: string | null = null;
  let usage: unknown = null;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    const ch = c.choices[0];
    if (!ch) continue;
    const d = ch.delta as { content?: string | null; reasoning_content?: string };
    if (d.reasoning_content) {
      assert.equal(reasoningDone, false, 'reasoning after the answer began');
      reasoning += d.reasoning_content;
    }
    if (d.content) {
      reasoningDone = true;
      content += d.content;
    }
    if (ch.finish_reason) finish = ch.finish_reason;
  }
  assert.equal(reasoning, SCRIPT_REASONING);
  assert.equal(content, SCRIPT_ANSWER);
  assert.equal(finish, 'stop');
  assert.ok(chunks > 20, `streamed in ${chunks} chunks`);
  assert.ok(usage, 'usage chunk');
});

test('max_tokens cuts the answer with finish_reason length; stop strings end it early', async () => {
  const r = await client().chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage?.completion_tokens, 5);
  const s = await client().chat.completions.create({ model: MODEL_NAME, messages: [{ role: 'user', content: 'hi' }], stop: ['answer'] });
  assert.equal(s.choices[0].finish_reason, 'stop');
  assert.equal(s.choices[0].message.content, 'Hello! The ');
});

test('malformed requests get OpenAI-style errors with proper status codes', async () => {
  const post = (body: string, path = '/v1/chat/completions') => fetch(server.url + path, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  const cases: Array<[string, number, RegExp]> = [
    ['{not json', 400, /not valid JSON/],
    ['', 400, /empty/],
    [JSON.stringify({ model: MODEL_NAME }), 400, /messages/],
    [JSON.stringify({ model: MODEL_NAME, messages: [{ role: 'wizard', content: 'x' }] }), 400, /role/],
    [JSON.stringify({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' }), 400, /temperature/],
    [JSON.stringify({ model: MODEL_NAME, messages: [{ role: 'user', content: 'x' }], n: 3 }), 400, /n > 1/],
    [JSON.stringify({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }), 404, /does not exist/],
  ];
  for (const [body, status, re] of cases) {
    const r = await post(body);
    assert.equal(r.status, status, body);
    const j = (await r.json()) as { error: { message: string; type: string } };
    assert.match(j.error.message, re, body);
    assert.equal(typeof j.error.type, 'string');
  }
  const unknown = await fetch(server.url + '/v1/embeddings', { method: 'POST', body: '{}' });
  assert.equal(unknown.status, 404);
  const wrongMethod = await fetch(server.url + '/v1/chat/completions');
  assert.equal(wrongMethod.status, 405);
  // The SDK surfaces them as typed errors.
  await assert.rejects(client().chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }), (e: unknown) => e instanceof OpenAI.NotFoundError);
});

/** A small WebSocket client of the contract, as the renderer's transport speaks it. */
async function wsClient(url: string, key?: string) {
  const ws = new WebSocket(url.replace('http', 'ws') + '/api/ws');
  await new Promise((r, j) => (ws.once('open', r), ws.once('error', j)));
  let id = 1;
  const pending = new Map<number, (m: { result?: unknown; error?: { code: string; message: string } }) => void>();
  const events: Array<{ event: EventName; data: any }> = [];
  const waiters: Array<() => void> = [];
  ws.on('message', (raw) => {
    const m = JSON.parse(String(raw));
    if ('event' in m) {
      events.push(m);
      waiters.splice(0).forEach((w) => w());
    } else pending.get(m.id)?.(m);
  });
  if (key) ws.send(JSON.stringify({ auth: key }));
  return {
    ws,
    events,
    invoke(channel: string, payload: unknown): Promise<{ result?: any; error?: { code: string; message: string } }> {
      const n = id++;
      return new Promise((r) => {
        pending.set(n, r);
        ws.send(JSON.stringify({ id: n, channel, payload }));
      });
    },
    async until(pred: (e: { event: EventName; data: any }) => boolean, ms = 30_000) {
      const t0 = Date.now();
      for (;;) {
        const hit = events.find(pred);
        if (hit) return hit;
        if (Date.now() - t0 > ms) throw new Error('timed out waiting for an event');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
  };
}

test('WebSocket contract: a conversation streams reasoning then answer and is stored', async () => {
  const c = await wsClient(server.url);
  const conv = (await c.invoke('chat.create', { modelId: model.id })).result;
  const sent = await c.invoke('chat.send', { conversationId: conv.id, content: 'Hello there' });
  assert.equal(sent.error, undefined);
  const assistantId = sent.result.assistant.id;
  const done = await c.until((e) => e.event === 'chat.done' && e.data.message.id === assistantId);
  const msg = done.data.message as Message;
  assert.equal(msg.status, 'done');
  assert.equal(msg.reasoning, SCRIPT_REASONING);
  assert.equal(msg.content, SCRIPT_ANSWER);
  assert.ok(msg.reasoningTokens > 0 && msg.reasoningTokens < msg.completionTokens);
  const deltas = c.events.filter((e) => e.event === 'chat.delta' && e.data.messageId === assistantId).map((e) => e.data);
  assert.equal(deltas.map((d) => d.reasoning).join(''), SCRIPT_REASONING);
  assert.equal(deltas.map((d) => d.content).join(''), SCRIPT_ANSWER);
  assert.equal(deltas[0].thinking, true);
  assert.equal(deltas.at(-1).thinking, false);
  // Stored, with the title taken from the first message.
  const got = (await c.invoke('chat.get', { id: conv.id })).result;
  assert.equal(got.conversation.title, 'Hello there');
  assert.equal(got.conversation.leafId, assistantId);
  assert.deepEqual(got.messages.map((m: Message) => [m.role, m.content]), [['user', 'Hello there'], ['assistant', SCRIPT_ANSWER]]);

  // Regenerate: a sibling answer, the first one kept as a branch.
  const regen = await c.invoke('chat.regenerate', { messageId: assistantId });
  const second = regen.result.assistant.id;
  await c.until((e) => e.event === 'chat.done' && e.data.message.id === second);
  const after = (await c.invoke('chat.get', { id: conv.id })).result;
  const answers = after.messages.filter((m: Message) => m.role === 'assistant');
  assert.equal(answers.length, 2);
  assert.equal(answers[0].parentId, answers[1].parentId);
  assert.equal(after.conversation.leafId, second);
  const back = await c.invoke('chat.selectLeaf', { conversationId: conv.id, leafId: assistantId });
  assert.equal(back.result.leafId, assistantId);

  // Edit and resend: a new user message under the same parent (the root), with its own answer.
  const edit = await c.invoke('chat.send', { conversationId: conv.id, content: 'Hello again', parentId: null });
  await c.until((e) => e.event === 'chat.done' && e.data.message.id === edit.result.assistant.id);
  const edited = (await c.invoke('chat.get', { id: conv.id })).result;
  assert.equal(edited.messages.filter((m: Message) => m.role === 'user' && m.parentId === null).length, 2);
  c.ws.close();
});

test('WebSocket contract: bad requests come back as error envelopes', async () => {
  const c = await wsClient(server.url);
  const unknown = await c.invoke('chat.explode', {});
  assert.equal(unknown.error?.code, 'invalid_request');
  const bad = await c.invoke('chat.send', { conversationId: 'one', content: '' });
  assert.equal(bad.error?.code, 'invalid_request');
  assert.match(bad.error!.message, /conversationId/);
  const missing = await c.invoke('chat.get', { id: 987654 });
  assert.equal(missing.error?.code, 'not_found');
  const extra = await c.invoke('settings.set', { threads: 2, evil: true });
  assert.equal(extra.error?.code, 'invalid_request');
  const settings = await c.invoke('settings.set', { contextLength: 2048 });
  assert.equal(settings.result.contextLength, 2048);
  c.ws.close();
});

test('stop ends an answer early and keeps what was written', async () => {
  const c = await wsClient(server.url);
  const conv = (await c.invoke('chat.create', { modelId: rambler.id })).result;
  await c.invoke('chat.update', { id: conv.id, sampling: { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, maxTokens: 4000, seed: 1 } });
  const sent = await c.invoke('chat.send', { conversationId: conv.id, content: 'Tell me a long story' });
  const id = sent.result.assistant.id;
  await c.until((e) => e.event === 'chat.delta' && e.data.messageId === id && e.data.completionTokens > 3);
  // A window that opens the conversation now gets the answer so far, not the last saved copy.
  const live = (await c.invoke('chat.get', { id: conv.id })).result.messages[1] as Message;
  assert.equal(live.status, 'streaming');
  assert.ok(live.completionTokens > 3 && (live.reasoning + live.content).length > 0, JSON.stringify(live));
  const stop = await c.invoke('chat.stop', { conversationId: conv.id });
  assert.deepEqual(stop.result, { ok: true });
  const done = await c.until((e) => e.event === 'chat.done' && e.data.message.id === id);
  assert.equal(done.data.message.status, 'stopped');
  assert.ok(done.data.message.completionTokens > 0 && done.data.message.completionTokens < 4000, String(done.data.message.completionTokens));
  const stored = (await c.invoke('chat.get', { id: conv.id })).result.messages[1] as Message;
  assert.equal(stored.status, 'stopped');
  assert.equal(stored.reasoning + stored.content, done.data.message.reasoning + done.data.message.content);
  assert.ok((stored.reasoning + stored.content).startsWith(live.reasoning + live.content), 'the live text was a prefix of the final one');
  c.ws.close();
});

test('a killed engine host: the answer ends as an error with its text kept, the engine restarts, the next answer works', async () => {
  const c = await wsClient(server.url);
  const conv = (await c.invoke('chat.create', { modelId: rambler.id })).result;
  await c.invoke('chat.update', { id: conv.id, sampling: { temperature: 1, topP: 1, topK: 0, minP: 0, repetitionPenalty: 1, maxTokens: 4000, seed: 2 } });
  const sent = await c.invoke('chat.send', { conversationId: conv.id, content: 'Keep going' });
  const id = sent.result.assistant.id;
  await c.until((e) => e.event === 'chat.delta' && e.data.messageId === id && e.data.completionTokens > 3);
  const pid = app.engineClient.pid!;
  process.kill(pid, 'SIGKILL');
  const done = await c.until((e) => e.event === 'chat.done' && e.data.message.id === id);
  assert.equal(done.data.message.status, 'error');
  assert.match(done.data.message.error, /stopped unexpectedly/);
  await c.until((e) => e.event === 'engine.state' && e.data.status === 'crashed');
  // The user's message is there; the partial answer too.
  const got = (await c.invoke('chat.get', { id: conv.id })).result;
  assert.equal(got.messages[0].content, 'Keep going');
  assert.ok(got.messages[1].reasoning.length + got.messages[1].content.length > 0);
  // The next message reloads the model in the restarted host.
  await c.invoke('chat.update', { id: conv.id, modelId: model.id, sampling: { temperature: 0.6, topP: 0.95, topK: 0, minP: 0, repetitionPenalty: 1, maxTokens: 200, seed: null } });
  const again = await c.invoke('chat.send', { conversationId: conv.id, content: 'hi' });
  const ok = await c.until((e) => e.event === 'chat.done' && e.data.message.id === again.result.assistant.id, 60_000);
  assert.equal(ok.data.message.status, 'done');
  assert.equal(ok.data.message.content, SCRIPT_ANSWER);
  assert.notEqual(app.engineClient.pid, pid);
  c.ws.close();
});

test('with an API key: /v1 needs the bearer token and the WebSocket its auth message', async () => {
  const keyed = await serve(app, { host: '127.0.0.1', port: 0, apiKey: 'sekrit', rendererDir: join(dir, 'no-renderer') });
  try {
    const denied = await fetch(keyed.url + '/v1/models');
    assert.equal(denied.status, 401);
    assert.equal(((await denied.json()) as { error: { code: string } }).error.code, 'invalid_api_key');
    const ok = await new OpenAI({ baseURL: keyed.url + '/v1', apiKey: 'sekrit', maxRetries: 0 }).models.list();
    assert.equal(ok.data.length, 2);
    const anon = new WebSocket(keyed.url.replace('http', 'ws') + '/api/ws');
    await new Promise((r) => anon.once('open', r));
    anon.send(JSON.stringify({ id: 1, channel: 'chat.list', payload: {} }));
    const code = await new Promise<number>((r) => anon.once('close', (c) => r(c)));
    assert.equal(code, 4401);
    const c = await wsClient(keyed.url, 'sekrit');
    const list = await c.invoke('chat.list', {});
    assert.ok(Array.isArray(list.result));
    c.ws.close();
    // A page of another origin cannot open the socket.
    const foreign = new WebSocket(keyed.url.replace('http', 'ws') + '/api/ws', { origin: 'http://evil.example' });
    const err = await new Promise<Error>((r) => foreign.once('error', r));
    assert.match(err.message, /403/);
  } finally {
    await keyed.close();
  }
});

test('a new context length in Settings reloads the model before the next answer', async () => {
  const c = await wsClient(server.url);
  await c.invoke('settings.set', { contextLength: 1024 });
  const conv = (await c.invoke('chat.create', { modelId: model.id })).result;
  const sent = await c.invoke('chat.send', { conversationId: conv.id, content: 'hi' });
  await c.until((e) => e.event === 'chat.done' && e.data.message.id === sent.result.assistant.id, 60_000);
  const state = (await c.invoke('models.state', {})).result;
  assert.equal(state.status, 'ready');
  assert.equal(state.loaded.context, 1024);
  c.ws.close();
});
