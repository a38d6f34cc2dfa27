// The renderer's only door to the app: `window.aha` with invoke (the contract's channels, answered
// with an {error, result} envelope) and on (events; returns a disposer). Nothing else of Node or
// Electron is exposed; the main process validates every payload again.
import { contextBridge, ipcRenderer, type IpcRendererEvent } from 'electron';

const INVOKE = 'aha:invoke';
const EVENT = 'aha:event';

contextBridge.exposeInMainWorld('aha', {
  invoke: (channel: string, payload: unknown) => ipcRenderer.invoke(INVOKE, channel, payload),
  on: (event: string, listener: (data: unknown) => void) => {
    const wrapped = (_e: IpcRendererEvent, name: string, data: unknown) => {
      if (name === event) listener(data);
    };
    ipcRenderer.on(EVENT, wrapped);
    return () => void ipcRenderer.off(EVENT, wrapped);
  },
});
