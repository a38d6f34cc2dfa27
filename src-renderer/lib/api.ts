// The renderer's one `api` object, its transport chosen once: Electron's preload bridge when the
// window has one, otherwise a WebSocket back to the `aha serve` that served this page.
import { readable, type Readable } from 'svelte/store';
import type { Api } from '../../src-main/contract/api.ts';
import { bridgeApi, socketApi, type Bridge, type ConnectionStatus } from './transport.ts';

export { RequestError, type ConnectionStatus } from './transport.ts';

const KEY_STORAGE = 'aha.apiKey';

/** The server's API key: `?key=` in the address (then remembered and taken out of it), or the remembered one. */
/** Remembers a key typed after the server refused the connection, and starts over with it. */
export function retryWithApiKey(key: string): void {
  try {
    localStorage.setItem(KEY_STORAGE, key);
  } catch {
    // Without storage the key travels in the address instead.
    const url = new URL(location.href);
    url.searchParams.set('key', key);
    location.replace(url);
    return;
  }
  location.reload();
}

function apiKey(): string | null {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('key');
  if (fromUrl) {
    try {
      localStorage.setItem(KEY_STORAGE, fromUrl);
    } catch {
      // Storage can be unavailable (private windows); the key still works for this page.
    }
    url.searchParams.delete('key');
    history.replaceState(history.state, '', url);
    return fromUrl;
  }
  try {
    return localStorage.getItem(KEY_STORAGE);
  } catch {
    return null;
  }
}

let setStatus: (s: ConnectionStatus) => void = () => {};
let current: ConnectionStatus = { state: 'connecting', reason: '', refused: false, opened: 0 };

/** connected / reconnecting, for the banner and for resyncing the stores after a reconnect. */
export const connection: Readable<ConnectionStatus> = readable(current, (set) => {
  setStatus = set;
  set(current);
  return () => {
    setStatus = () => {};
  };
});

function report(s: ConnectionStatus): void {
  current = s;
  setStatus(s);
}

function choose(): Api {
  const bridge = (window as unknown as { aha?: Bridge }).aha;
  if (bridge) {
    report({ state: 'connected', reason: '', refused: false, opened: 1 });
    return bridgeApi(bridge);
  }
  return socketApi({
    url: `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/ws`,
    key: apiKey(),
    connect: (url) => new WebSocket(url),
    onStatus: report,
  });
}

export const api: Api = choose();
