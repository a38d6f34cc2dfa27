// The app's side of the engine host: starts the host process, sends requests, routes events, and
// restarts the host when it dies. A request in flight when the host dies fails with
// EngineCrashedError; the caller keeps whatever it had already received.
import { fork } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { HostEvent, HostMessage, HostRequest, HostResults } from './protocol.ts';

/** A running host process, whatever started it (child_process.fork or Electron's utilityProcess). */
export interface HostProcess {
  readonly pid: number | undefined;
  send(message: HostRequest): void;
  onMessage(listener: (message: HostMessage) => void): void;
  onExit(listener: (code: number | null, signal: string | null) => void): void;
  kill(): void;
}

export type HostSpawner = () => HostProcess;

export class EngineCrashedError extends Error {
  constructor(detail: string) {
    super(`the engine stopped unexpectedly (${detail}); it has been restarted`);
  }
}

/** Headless hosts: a Node child process running host.ts (through tsx) with an IPC channel. */
export function forkHost(entry = fileURLToPath(new URL('./host.ts', import.meta.url))): HostSpawner {
  return () => {
    const child = fork(entry, [], {
      execArgv: entry.endsWith('.ts') ? ['--import', 'tsx'] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    return {
      get pid() {
        return child.pid;
      },
      send: (m) => void child.send(m),
      onMessage: (l) => void child.on('message', (m) => l(m as HostMessage)),
      onExit: (l) => void child.on('exit', (code, signal) => l(code, signal)),
      kill: () => void child.kill('SIGKILL'),
    };
  };
}

type Op = HostRequest['op'];
type Payload<O extends Op> = Omit<Extract<HostRequest, { op: O }>, 'id' | 'op'>;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  onEvent?: (e: HostEvent) => void;
}

export interface EngineClientEvents {
  /** The host died; it is being restarted. */
  crashed: [detail: string];
  /** A (re)started host is ready. */
  ready: [pid: number];
}

export class EngineClient extends EventEmitter<EngineClientEvents> {
  private proc: HostProcess | null = null;
  private ready: Promise<void> | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private crashes: number[] = [];

  constructor(private readonly spawn: HostSpawner) {
    super();
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Starts the host if it is not running; resolves once it is ready. */
  start(): Promise<void> {
    if (this.ready) return this.ready;
    const proc = this.spawn();
    this.proc = proc;
    this.ready = new Promise<void>((resolve, reject) => {
      let up = false;
      proc.onMessage((m) => {
        if (m.type === 'ready') {
          up = true;
          this.emit('ready', m.pid);
          resolve();
          return;
        }
        const p = this.pending.get(m.id);
        if (!p) return;
        if (m.type === 'result') {
          this.pending.delete(m.id);
          p.resolve(m.result);
        } else if (m.type === 'error') {
          this.pending.delete(m.id);
          p.reject(new Error(m.message));
        } else p.onEvent?.(m);
      });
      proc.onExit((code, signal) => {
        if (this.proc !== proc) return;
        this.proc = null;
        this.ready = null;
        const detail = signal ? `killed by ${signal}` : `exit code ${code}`;
        if (!up) reject(new Error(`the engine host did not start (${detail})`));
        const failed = [...this.pending.values()];
        this.pending.clear();
        for (const p of failed) p.reject(new EngineCrashedError(detail));
        if (this.closed) return;
        this.emit('crashed', detail);
        // Restart at once, unless it keeps dying: then wait for the next request.
        const now = Date.now();
        this.crashes = [...this.crashes.filter((t) => now - t < 60_000), now];
        if (this.crashes.length <= 3) this.start().catch(() => {});
      });
    });
    return this.ready;
  }

  async request<O extends Op>(op: O, payload: Payload<O>, onEvent?: (e: HostEvent) => void): Promise<HostResults[O]> {
    return this.post(this.nextId++, op, payload, onEvent);
  }

  /** Like request('chat'), with the request id exposed so that it can be cancelled. */
  chat(payload: Payload<'chat'>, onEvent: (e: HostEvent) => void): { id: number; done: Promise<HostResults['chat']> } {
    const id = this.nextId++;
    return { id, done: this.post(id, 'chat', payload, onEvent) };
  }

  private async post<O extends Op>(id: number, op: O, payload: Payload<O>, onEvent?: (e: HostEvent) => void): Promise<HostResults[O]> {
    if (this.closed) throw new Error('the engine is shut down');
    await this.start();
    return new Promise<HostResults[O]>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, onEvent });
      this.proc!.send({ id, op, ...payload } as HostRequest);
    });
  }

  async cancel(target: number): Promise<boolean> {
    if (!this.proc) return false;
    return (await this.request('cancel', { target })).cancelled;
  }

  /** Kills the host (tests, and a stuck engine); it restarts like after any crash. */
  kill(): void {
    this.proc?.kill();
  }

  async close(): Promise<void> {
    this.closed = true;
    const proc = this.proc;
    if (!proc) return;
    await new Promise<void>((resolve) => {
      proc.onExit(() => resolve());
      proc.kill();
    });
  }
}
