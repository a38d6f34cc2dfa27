// The two transports behind the renderer's one `api` object: Electron's preload bridge, and a
// WebSocket to `aha serve` speaking the contract's wire messages. Neither knows about Svelte;
// lib/api.ts picks one at start-up.
import type { Api, ApiErrorBody, Envelope, ErrorCode, EventName, WireEvent, WireResponse } from '../../src-main/contract/api.ts';

/** What the Electron preload exposes as `window.aha`. */
export interface Bridge {
  invoke(channel: string, payload: unknown): Promise<Envelope<unknown>>;
  on(event: string, listener: (data: unknown) => void): () => void;
}

/** A failed request: the server's code and message (shown to the user as they are). */
export class RequestError extends Error {
  constructor(
    readonly code: ErrorCode | 'disconnected',
    message: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

function unwrap(envelope: Envelope<unknown>): unknown {
  if (envelope.error) throw new RequestError(envelope.error.code, envelope.error.message);
  return envelope.result;
}

export function bridgeApi(bridge: Bridge): Api {
  return {
    invoke: async (channel, payload) => unwrap(await bridge.invoke(channel, payload)) as never,
    on: (event, listener) => bridge.on(event, listener as (data: unknown) => void),
  };
}

export type ConnectionState = 'connecting' | 'connected' | 'reconnecting';

export interface ConnectionStatus {
  state: ConnectionState;
  /** Why the last connection closed, when the server said (a refused API key, for one). */
  reason: string;
  /** The server turned the connection away (close code 4401 or 1008, or a reason about the key). */
  refused: boolean;
  /** Times the socket has (re)opened; stores resync when it goes past 1. */
  opened: number;
}

// Handlers typed as methods are compared bivariantly, so the DOM's (ev: CloseEvent) => any fits.
type Handler<E> = { handle(event: E): void }['handle'];

/** The part of the DOM WebSocket the transport uses (a fake one in tests). */
export interface SocketLike {
  readonly readyState: number;
  onopen: Handler<unknown> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onmessage: Handler<{ data: unknown }> | null;
  onerror: Handler<unknown> | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export interface SocketOptions {
  url: string;
  /** Sent as the first message, `{"auth": key}`, when present. */
  key: string | null;
  connect: (url: string) => SocketLike;
  onStatus: (status: ConnectionStatus) => void;
  /** Reconnect delays: the first, doubled on each failure up to the last. */
  minDelayMs?: number;
  maxDelayMs?: number;
  setTimer?: (fn: () => void, ms: number) => unknown;
}

const OPEN = 1;

interface Pending {
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  /** The serialized request, kept until it is written to an open socket. */
  frame: string;
  sent: boolean;
}

/**
 * A WebSocket transport that reconnects with backoff. Requests made before the first open wait
 * for it; requests made while reconnecting fail at once, and every request still pending when a
 * connection closes is rejected (whether the server acted on it is unknown), so nothing hangs.
 */
export function socketApi(options: SocketOptions): Api & { close(): void } {
  const minDelay = options.minDelayMs ?? 500;
  const maxDelay = options.maxDelayMs ?? 10_000;
  const setTimer = options.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
  const listeners = new Map<string, Set<(data: unknown) => void>>();
  const pending = new Map<number, Pending>();
  const status: ConnectionStatus = { state: 'connecting', reason: '', refused: false, opened: 0 };
  let nextId = 1;
  let delay = minDelay;
  let socket: SocketLike | null = null;
  let closed = false;
  let timer = false;

  const report = (patch: Partial<ConnectionStatus>) => {
    Object.assign(status, patch);
    options.onStatus({ ...status });
  };

  const flush = () => {
    if (!socket || socket.readyState !== OPEN) return;
    for (const p of pending.values()) {
      if (p.sent) continue;
      socket.send(p.frame);
      p.sent = true;
    }
  };

  const receive = (raw: unknown) => {
    if (typeof raw !== 'string') return;
    let message: Partial<WireResponse & WireEvent>;
    try {
      message = JSON.parse(raw) as Partial<WireResponse & WireEvent>;
    } catch {
      return;
    }
    if (typeof message.id === 'number') {
      const p = pending.get(message.id);
      if (!p) return;
      pending.delete(message.id);
      const error = message.error as ApiErrorBody | undefined;
      if (error) p.reject(new RequestError(error.code, error.message));
      else p.resolve(message.result);
    } else if (typeof message.event === 'string') {
      for (const listener of listeners.get(message.event) ?? []) listener(message.data);
    }
  };

  const open = () => {
    timer = false;
    if (closed) return;
    const ws = options.connect(options.url);
    socket = ws;
    ws.onopen = () => {
      delay = minDelay;
      if (options.key) ws.send(JSON.stringify({ auth: options.key }));
      report({ state: 'connected', reason: '', refused: false, opened: status.opened + 1 });
      flush();
    };
    ws.onmessage = (e) => receive(e.data);
    ws.onerror = () => {};
    ws.onclose = (e) => {
      if (socket !== ws) return;
      socket = null;
      const lost = new RequestError(
        'disconnected',
        status.state === 'connected'
          ? 'The connection to Aha was lost before the answer came; try again once it is back.'
          : 'Aha is not reachable; retrying the connection.',
      );
      for (const p of pending.values()) p.reject(lost);
      pending.clear();
      if (closed) return;
      report({
        state: 'reconnecting',
        reason: e.reason || (e.code === 1006 ? '' : `closed (${e.code})`),
        refused: e.code === 4401 || e.code === 1008 || /\b(key|auth)/i.test(e.reason),
      });
      schedule();
    };
  };

  const schedule = () => {
    if (timer || closed) return;
    timer = true;
    const wait = delay * (0.8 + Math.random() * 0.4);
    delay = Math.min(delay * 2, maxDelay);
    setTimer(open, wait);
  };

  open();

  return {
    invoke(channel, payload) {
      const id = nextId++;
      return new Promise((resolve, reject) => {
        if (closed) return reject(new RequestError('disconnected', 'The connection to Aha is closed.'));
        if (status.state === 'reconnecting') return reject(new RequestError('disconnected', 'Not connected to Aha; reconnecting…'));
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject, frame: JSON.stringify({ id, channel, payload }), sent: false });
        flush();
      });
    },
    on(event: EventName, listener) {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const l = listener as (data: unknown) => void;
      set.add(l);
      return () => void set.delete(l);
    },
    close() {
      closed = true;
      socket?.close(1000, 'closed by the app');
    },
  };
}
