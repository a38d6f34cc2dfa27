// The engine as the app sees it: which model is loaded, its state as events, and loads that
// happen one at a time. After a crash of the host process the state says so, and the next
// request that needs the model loads it again.
import { ApiError, type EngineState, type ModelEntry, type Settings } from '../contract/api.ts';
import type { EngineClient } from '../engine-host/client.ts';
import type { HostEvent, HostResults } from '../engine-host/protocol.ts';
import type { EventBus } from './events.ts';

export class EngineService {
  private current: EngineState = { status: 'idle', modelId: null, progress: 0, message: '', loaded: null };
  /** Loads and unloads run one after another. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The settings the loaded model was loaded with: a change of threads or context reloads it. */
  private loadedWith: { threads: number; contextLength: number } | null = null;

  constructor(
    private readonly client: EngineClient,
    private readonly bus: EventBus,
    private readonly settings: () => Settings,
  ) {
    client.on('crashed', (detail) => {
      this.set({
        status: 'crashed',
        modelId: this.current.modelId,
        progress: 0,
        message: `The engine stopped unexpectedly (${detail}) and was restarted; nothing you wrote was lost. The model loads again with the next message.`,
        loaded: null,
      });
    });
  }

  get state(): EngineState {
    return this.current;
  }

  private set(s: EngineState): EngineState {
    this.current = s;
    this.bus.emit('engine.state', s);
    return s;
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => {});
    return next;
  }

  load(entry: ModelEntry): Promise<EngineState> {
    return this.serial(async () => {
      if (entry.missing) throw new ApiError('not_found', `${entry.path} is missing: it was moved or deleted`);
      this.set({ status: 'loading', modelId: entry.id, progress: 0, message: `Loading ${entry.name}…`, loaded: null });
      const s = this.settings();
      this.loadedWith = null;
      try {
        const loaded = await this.client.request('load', { path: entry.path, options: { threads: s.threads || undefined, context: s.contextLength } }, (e) => {
          if (e.type === 'progress') this.set({ ...this.current, progress: e.fraction, message: `Loading ${entry.name}: ${e.stage}` });
        });
        const i = loaded.info;
        this.loadedWith = { threads: s.threads, contextLength: s.contextLength };
        const note = loaded.templateError ? ` (chat template: ${loaded.templateError}; using ${loaded.templateName})` : '';
        return this.set({
          status: 'ready',
          modelId: entry.id,
          progress: 1,
          message: `${entry.name} is ready${note}`,
          loaded: { architecture: i.architecture, parameters: i.parameters, context: i.context, threads: i.threads, weightBytes: i.weightBytes, kvBytes: i.kvBytes },
        });
      } catch (e) {
        this.set({ status: 'error', modelId: entry.id, progress: 0, message: (e as Error).message, loaded: null });
        throw new ApiError('engine', `could not load ${entry.name}: ${(e as Error).message}`);
      }
    });
  }

  unload(): Promise<EngineState> {
    return this.serial(async () => {
      await this.client.request('unload', {});
      this.loadedWith = null;
      return this.set({ status: 'idle', modelId: null, progress: 0, message: '', loaded: null });
    });
  }

  /** Loads the model unless it is the one ready now, loaded with the settings in effect. */
  async ensure(entry: ModelEntry): Promise<void> {
    await this.queue;
    const s = this.settings();
    const same = this.loadedWith && this.loadedWith.threads === s.threads && this.loadedWith.contextLength === s.contextLength;
    if (this.current.status === 'ready' && this.current.modelId === entry.id && same) return;
    await this.load(entry);
  }

  chat(payload: Parameters<EngineClient['chat']>[0], onEvent: (e: HostEvent) => void): { id: number; done: Promise<HostResults['chat']> } {
    return this.client.chat(payload, onEvent);
  }

  cancel(requestId: number): Promise<boolean> {
    return this.client.cancel(requestId);
  }

  cpu(): Promise<HostResults['cpu']> {
    return this.client.request('cpu', {});
  }
}
