// The window: which view is on screen, what the app reported about itself, and start-up: every
// store loads once, listens to its events, and loads again after the connection comes back.
import type { AppInfo } from '../../src-main/contract/api.ts';
import { api, connection } from '../lib/api.ts';
import { chat, loadConversations, openConversation, reloadOpen, watchChat } from './chat.svelte.ts';
import { loadModels, watchModels } from './models.svelte.ts';
import { loadSettings } from './settings.svelte.ts';
import { attempt } from './toasts.svelte.ts';

export type View = 'chat' | 'models' | 'settings';

export const ui = $state({
  view: 'chat' as View,
  info: null as AppInfo | null,
  /** The first load finished (until then the screens show no "empty" verdicts). */
  started: false,
  /** Ask the Models view to put the cursor in its "add a model" field. */
  focusAddModel: false,
});

export function showView(view: View): void {
  ui.view = view;
}

async function loadAll(): Promise<void> {
  const [info] = await Promise.all([
    attempt(() => api.invoke('app.info', {}), 'Could not read the app information', { background: true }),
    loadSettings(),
    loadModels(),
    loadConversations(),
  ]);
  if (info) ui.info = info;
}

async function openRecent(): Promise<void> {
  const recent = chat.conversations[0];
  if (recent && !chat.open) await openConversation(recent.id);
}

/** Loads everything and opens the most recent conversation; returns the disposer of the listeners. */
export async function startApp(): Promise<() => void> {
  const offs = [watchModels(), watchChat()];
  // Events were missed while the connection was down (or the first load never reached the server).
  let stale = false;
  offs.push(
    connection.subscribe((status) => {
      if (status.state === 'reconnecting') stale = true;
      else if (status.state === 'connected' && stale) {
        stale = false;
        void loadAll().then(() => (chat.open ? reloadOpen() : openRecent()));
      }
    }),
  );
  await loadAll();
  await openRecent();
  ui.started = true;
  return () => offs.forEach((off) => off());
}
