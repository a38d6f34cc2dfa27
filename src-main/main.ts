// The desktop app's main process: the window, the menu, and the wiring between the renderer
// (IPC) and the services. Everything else lives in services/; the engine runs in its own
// utilityProcess so that a native fault never takes the window down.
import { app, BrowserWindow, dialog, ipcMain, Menu, shell, utilityProcess, type MenuItemConstructorOptions } from 'electron';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dispatch } from './contract/api.ts';
import { createApp, defaultDataDir, type App } from './services/app.ts';
import type { HostProcess } from './engine-host/client.ts';
import type { HostMessage } from './engine-host/protocol.ts';

const here = dirname(fileURLToPath(import.meta.url));
const INVOKE = 'aha:invoke';
const EVENT = 'aha:event';

let services: App | null = null;
let win: BrowserWindow | null = null;

function spawnHost(): HostProcess {
  const child = utilityProcess.fork(join(here, 'host.js'), [], { serviceName: 'Aha engine', stdio: 'inherit' });
  return {
    get pid() {
      return child.pid;
    },
    send: (m) => child.postMessage(m),
    onMessage: (l) => void child.on('message', (m: HostMessage) => l(m)),
    onExit: (l) => void child.on('exit', (code) => l(code, null)),
    kill: () => void child.kill(),
  };
}

function createWindow(): BrowserWindow {
  const w = new BrowserWindow({
    width: 1280,
    height: 820,
    minWidth: 760,
    minHeight: 520,
    title: 'Aha',
    show: false,
    webPreferences: {
      preload: join(here, '../preload/index.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      webSecurity: true,
      spellcheck: true,
    },
  });
  w.once('ready-to-show', () => w.show());
  // The app never navigates: links open in the user's browser, everything else is refused.
  w.webContents.setWindowOpenHandler(({ url }) => {
    if (/^https?:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  w.webContents.on('will-navigate', (e) => e.preventDefault());
  w.webContents.on('will-attach-webview', (e) => e.preventDefault());
  const devUrl = process.env.ELECTRON_RENDERER_URL;
  if (devUrl) void w.loadURL(devUrl);
  else void w.loadFile(join(here, '../renderer/index.html'));
  return w;
}

function buildMenu(): void {
  const isMac = process.platform === 'darwin';
  const template: MenuItemConstructorOptions[] = [
    ...(isMac ? [{ role: 'appMenu' as const }] : []),
    { role: 'fileMenu' },
    { role: 'editMenu' },
    { role: 'viewMenu' },
    { role: 'windowMenu' },
    { role: 'help', submenu: [{ label: 'Aha on the web', click: () => void shell.openExternal('https://github.com/') }] },
  ];
  Menu.setApplicationMenu(Menu.buildFromTemplate(template));
}

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => {
    if (!win) return;
    if (win.isMinimized()) win.restore();
    win.focus();
  });

  app.whenReady().then(async () => {
    const dataDir = process.env.AHA_DATA_DIR ?? app.getPath('userData') ?? defaultDataDir();
    try {
      services = await createApp({ dataDir, spawnHost, shell: 'electron' });
    } catch (e) {
      // A database from a newer Aha, or one that is not a database: say so and touch nothing.
      dialog.showErrorBox('Aha cannot open its data', `${(e as Error).message}\n\nData folder: ${dataDir}`);
      app.exit(1);
      return;
    }
    // Only our own window may call in: the sender's frame must be the app's top frame.
    ipcMain.handle(INVOKE, (e, channel: unknown, payload: unknown) => {
      if (!win || e.sender !== win.webContents || e.senderFrame !== win.webContents.mainFrame)
        return { error: { code: 'invalid_request', message: 'request from an unknown frame' } };
      if (typeof channel !== 'string') return { error: { code: 'invalid_request', message: 'channel must be a string' } };
      return dispatch(services!.handlers, channel, payload);
    });
    services.bus.subscribe((event, data) => win?.webContents.send(EVENT, event, data));
    buildMenu();
    win = createWindow();
    win.on('closed', () => (win = null));
    app.on('activate', () => {
      if (!win) win = createWindow();
    });
  });

  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit();
  });

  let closing = false;
  app.on('before-quit', (e) => {
    if (closing || !services) return;
    closing = true;
    e.preventDefault();
    void services.close().finally(() => app.quit());
  });
}
