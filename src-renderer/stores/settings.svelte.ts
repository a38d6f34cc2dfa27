// The app's settings (engine threads, context length, default sampling and system prompt, theme).
import type { Settings } from '../../src-main/contract/api.ts';
import { api } from '../lib/api.ts';
import { attempt } from './toasts.svelte.ts';

export const settings = $state<{ value: Settings | null }>({ value: null });

export async function loadSettings(): Promise<void> {
  const value = await attempt(() => api.invoke('settings.get', {}), 'Could not read the settings', { background: true });
  if (value) settings.value = value;
}

/** Saves a change; the stored settings come back and replace the shown ones. */
export async function saveSettings(patch: Partial<Settings>): Promise<boolean> {
  const value = await attempt(() => api.invoke('settings.set', patch), 'Could not save the settings');
  if (value) settings.value = value;
  return value !== undefined;
}
