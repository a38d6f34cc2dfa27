// The model library and the engine's state, kept current by `models.changed` and `engine.state`.
import type { EngineState, ModelEntry } from '../../src-main/contract/api.ts';
import { api } from '../lib/api.ts';
import { attempt } from './toasts.svelte.ts';

export const models = $state({
  list: [] as ModelEntry[],
  /** The first list has arrived (until then "no models" is not known to be true). */
  loaded: false,
  engine: { status: 'idle', modelId: null, progress: 0, message: '', loaded: null } as EngineState,
  /** A scan or an add is running. */
  busy: false,
});

export function modelName(id: number | null): string {
  if (id === null) return '';
  return models.list.find((m) => m.id === id)?.name ?? `model #${id}`;
}

export function watchModels(): () => void {
  const offs = [
    api.on('engine.state', (state) => {
      models.engine = state;
    }),
    api.on('models.changed', ({ models: list }) => {
      models.list = list;
      models.loaded = true;
    }),
  ];
  return () => offs.forEach((off) => off());
}

export async function loadModels(): Promise<void> {
  const [list, engine] = await Promise.all([
    attempt(() => api.invoke('models.list', {}), 'Could not list the models', { background: true }),
    attempt(() => api.invoke('models.state', {}), 'Could not read the engine state', { background: true }),
  ]);
  if (list) {
    models.list = list;
    models.loaded = true;
  }
  if (engine) models.engine = engine;
}

async function busy<T>(action: () => Promise<T>, doing: string): Promise<T | undefined> {
  models.busy = true;
  try {
    return await attempt(action, doing);
  } finally {
    models.busy = false;
  }
}

export async function addModel(path: string): Promise<ModelEntry | undefined> {
  const entry = await busy(() => api.invoke('models.add', { path }), 'Could not add the model');
  if (entry && !models.list.some((m) => m.id === entry.id)) models.list.push(entry);
  return entry;
}

export async function refreshModels(): Promise<void> {
  const list = await busy(() => api.invoke('models.refresh', {}), 'Could not rescan the model folders');
  if (list) models.list = list;
}

export async function removeModel(id: number): Promise<void> {
  const ok = await attempt(() => api.invoke('models.remove', { id }), 'Could not remove the model');
  if (ok) models.list = models.list.filter((m) => m.id !== id);
}

export async function loadModel(id: number): Promise<void> {
  const state = await attempt(() => api.invoke('models.load', { id }), `Could not load ${modelName(id)}`);
  if (state) models.engine = state;
}

export async function unloadModel(): Promise<void> {
  const state = await attempt(() => api.invoke('models.unload', {}), 'Could not unload the model');
  if (state) models.engine = state;
}
