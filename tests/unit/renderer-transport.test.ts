// The renderer's transports: the Electron bridge unwraps the {error, result} envelope; the
// WebSocket one authenticates first, matches answers to requests by id, routes events, rejects
// what is pending when the connection drops, and reconnects with growing delays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bridgeApi, RequestError, socketApi, type ConnectionStatus, type SocketLike } from '../../src-renderer/lib/transport.ts';

class FakeSocket implements SocketLike {
  readyState = 0;
  sent: string[] = [];
  onopen: SocketLike['onopen'] = null;
  onclose: SocketLike['onclose'] = null;
  onmessage: SocketLike['onmessage'] = null;
  onerror: SocketLike['onerror'] = null;
  send(data: string) {
    assert.equal(this.readyState, 1, 'sent only on an open socket');
    this.sent.push(data);
  }
  close() {
    this.drop(1000, '');
  }
  open() {
    this.readyState = 1;
    this.onopen?.({});
  }
  drop(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  reply(message: unknown) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }
  frames() {
    return this.sent.map((s) => JSON.parse(s) as Record<string, unknown>);
  }
}

function harness(key: string | null = null) {
  const sockets: FakeSocket[] = [];
  const timers: Array<{ fn: () => void; ms: number }> = [];
  const statuses: ConnectionStatus[] = [];
  const api = socketApi({
    url: 'ws://localhost/api/ws',
    key,
    connect: () => {
      const s = new FakeSocket();
      sockets.push(s);
      return s;
    },
    onStatus: (s) => statuses.push(s),
    minDelayMs: 100,
    maxDelayMs: 400,
    setTimer: (fn, ms) => timers.push({ fn, ms }),
  });
  return { api, sockets, timers, statuses };
}

test('the API key goes first, then the requests queued before the socket opened', async () => {
  const { api, sockets } = harness('secret');
  const pending = api.invoke('models.list', {});
  assert.equal(sockets[0].sent.length, 0);
  sockets[0].open();
  const [auth, request] = sockets[0].frames();
  assert.deepEqual(auth, { auth: 'secret' });
  assert.equal(request.channel, 'models.list');
  sockets[0].reply({ id: request.id, result: [] });
  assert.deepEqual(await pending, []);
});

test('answers are matched by id; errors carry the server code and message', async () => {
  const { api, sockets } = harness();
  sockets[0].open();
  const a = api.invoke('settings.get', {});
  const b = api.invoke('models.add', { path: '/nope.gguf' });
  const [ra, rb] = sockets[0].frames();
  sockets[0].reply({ id: rb.id, error: { code: 'not_found', message: '/nope.gguf does not exist' } });
  sockets[0].reply({ id: ra.id, result: { theme: 'dark' } });
  assert.deepEqual(await a, { theme: 'dark' });
  await assert.rejects(b, (e: unknown) => e instanceof RequestError && e.code === 'not_found' && e.message === '/nope.gguf does not exist');
});

test('events reach their listeners until disposed', () => {
  const { api, sockets } = harness();
  sockets[0].open();
  const seen: unknown[] = [];
  const off = api.on('engine.state', (s) => seen.push(s.status));
  sockets[0].reply({ event: 'engine.state', data: { status: 'loading' } });
  sockets[0].reply({ event: 'chat.done', data: {} });
  off();
  sockets[0].reply({ event: 'engine.state', data: { status: 'ready' } });
  assert.deepEqual(seen, ['loading']);
});

test('a dropped connection rejects what was pending, refuses new requests, and reconnects with backoff', async () => {
  const { api, sockets, timers, statuses } = harness();
  sockets[0].open();
  const pending = api.invoke('chat.list', {});
  sockets[0].drop();
  await assert.rejects(pending, (e: unknown) => e instanceof RequestError && e.code === 'disconnected' && /connection .* lost/.test(e.message));
  assert.equal(statuses.at(-1)?.state, 'reconnecting');
  await assert.rejects(api.invoke('chat.list', {}), /reconnecting/);

  assert.equal(timers.length, 1);
  timers[0].fn();
  sockets[1].drop();
  timers[1].fn();
  sockets[2].drop();
  timers[2].fn();
  sockets[3].drop();
  const delays = timers.map((t) => t.ms);
  assert.ok(delays[0] >= 80 && delays[0] <= 120, `first delay ${delays[0]}`);
  assert.ok(delays[1] > delays[0] && delays[3] <= 400 * 1.2, `delays grow up to the cap: ${delays}`);

  timers[3].fn();
  sockets[4].open();
  assert.equal(statuses.at(-1)?.state, 'connected');
  assert.equal(statuses.at(-1)?.opened, 2, 'stores resync when opened goes past 1');
  const again = api.invoke('chat.list', {});
  sockets[4].reply({ id: sockets[4].frames()[0].id, result: [] });
  assert.deepEqual(await again, []);
});

test('a refusal reason from the server is reported', () => {
  const { sockets, statuses } = harness('wrong');
  sockets[0].open();
  sockets[0].drop(4401, 'wrong API key');
  assert.equal(statuses.at(-1)?.reason, 'wrong API key');
  assert.equal(statuses.at(-1)?.refused, true);
});

test('an ordinary drop is not a refusal', () => {
  const { sockets, statuses } = harness();
  sockets[0].open();
  sockets[0].drop(1006);
  assert.equal(statuses.at(-1)?.refused, false);
  assert.equal(statuses.at(-1)?.reason, '');
});

test('the Electron bridge unwraps envelopes and passes events through', async () => {
  const listeners = new Map<string, (d: unknown) => void>();
  const api = bridgeApi({
    invoke: async (channel) =>
      channel === 'settings.get' ? { result: { theme: 'light' } } : { error: { code: 'invalid_request', message: `bad ${channel}` } },
    on: (event, listener) => {
      listeners.set(event, listener);
      return () => listeners.delete(event);
    },
  });
  assert.deepEqual(await api.invoke('settings.get', {}), { theme: 'light' });
  await assert.rejects(api.invoke('models.list', {}), (e: unknown) => e instanceof RequestError && e.message === 'bad models.list');
  const got: unknown[] = [];
  const off = api.on('models.changed', (d) => got.push(d));
  listeners.get('models.changed')?.({ models: [] });
  off();
  assert.equal(listeners.size, 0);
  assert.deepEqual(got, [{ models: [] }]);
});
