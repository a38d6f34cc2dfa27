// Messages for the user: every failed request ends up here, with the server's own words.
import { RequestError } from '../lib/api.ts';

export interface Toast {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

export const toasts = $state<{ items: Toast[] }>({ items: [] });

let nextId = 1;
const LIFETIME_MS = { info: 4000, error: 12_000 };

export function notify(text: string, kind: Toast['kind'] = 'info'): void {
  // The same failure repeated (a retry loop, a double click) shows once.
  if (toasts.items.some((t) => t.text === text && t.kind === kind)) return;
  const id = nextId++;
  toasts.items.push({ id, kind, text });
  setTimeout(() => dismiss(id), LIFETIME_MS[kind]);
}

export function dismiss(id: number): void {
  const i = toasts.items.findIndex((t) => t.id === id);
  if (i >= 0) toasts.items.splice(i, 1);
}

export function reportError(error: unknown, doing?: string): void {
  const message = error instanceof Error ? error.message : String(error);
  notify(doing ? `${doing}: ${message}` : message, 'error');
}

/**
 * Runs an action and reports its failure; undefined when it failed. A `background` read that
 * failed for want of a connection is not reported: the banner says so, and it runs again on
 * reconnect.
 */
export async function attempt<T>(action: () => Promise<T>, doing?: string, { background = false } = {}): Promise<T | undefined> {
  try {
    return await action();
  } catch (error) {
    if (!(background && error instanceof RequestError && error.code === 'disconnected')) reportError(error, doing);
    return undefined;
  }
}
