// The app's services behind the contract, the same for the desktop window and `aha serve`:
// one database, one engine host, the model library and conversations. main.ts and the server
// only carry requests and events to and from `handlers` and `bus`.
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AppInfo, Handlers } from '../contract/api.ts';
import { openDatabase, type Database } from '../db/index.ts';
import { getSettings, setSettings } from '../db/settings.ts';
import { recoverInterruptedMessages } from '../db/conversations.ts';
import { EngineClient, type HostSpawner } from '../engine-host/client.ts';
import { ChatService } from './chat/service.ts';
import { EngineService } from './engine.ts';
import { EventBus } from './events.ts';
import { ModelLibrary } from './models/library.ts';
import { discoveryFolders } from './models/discover.ts';
import { DEFAULT_MODEL_NAME, installDefaultModel } from './models/default-model.ts';
import { workbenchHandlers } from './workbench.ts';

/** Where Aha keeps its database: Electron's userData folder for an app named "Aha". */
export function defaultDataDir(): string {
  if (process.env.AHA_DATA_DIR) return process.env.AHA_DATA_DIR;
  const home = homedir();
  if (process.platform === 'darwin') return join(home, 'Library', 'Application Support', 'Aha');
  if (process.platform === 'win32') return join(process.env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'Aha');
  return join(process.env.XDG_CONFIG_HOME ?? join(home, '.config'), 'Aha');
}

export interface AppOptions {
  dataDir: string;
  spawnHost: HostSpawner;
  shell: AppInfo['shell'];
  /** Home folder scanned for LM Studio and Ollama models (tests point it elsewhere). */
  home?: string;
  /** Put the built-in default model (resources/default-model) in the library; default true (tests leave it out). */
  defaultModel?: boolean;
}

export interface App {
  handlers: Handlers;
  bus: EventBus;
  db: Database;
  engine: EngineService;
  engineClient: EngineClient;
  library: ModelLibrary;
  chat: ChatService;
  close(): Promise<void>;
}

function appVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    return pkg.version;
  } catch {
    return '0.0.0';
  }
}

export async function createApp(opts: AppOptions): Promise<App> {
  mkdirSync(opts.dataDir, { recursive: true });
  const db = openDatabase(join(opts.dataDir, 'aha.db'));
  const interrupted = recoverInterruptedMessages(db);
  if (interrupted) console.warn(`${interrupted} answer(s) were interrupted by the last shutdown; their text so far is kept`);
  const bus = new EventBus();
  const settings = () => getSettings(db);
  const engineClient = new EngineClient(opts.spawnHost);
  const engine = new EngineService(engineClient, bus, settings);
  // Start the engine host now: the first load and app.info need not wait for it later.
  let closing = false;
  engineClient.start().catch((e: Error) => {
    if (!closing) console.error(e.message);
  });
  const home = opts.home ?? homedir();
  const library = new ModelLibrary(db, { home, settings });
  // New LM Studio / Ollama models appear, and vanished files are marked missing, at every start.
  library.refresh();
  // The built-in model: in the library from the first start, and what a chat uses when no model is chosen.
  let builtin: string | null = null;
  if (opts.defaultModel !== false) {
    try {
      builtin = installDefaultModel(opts.dataDir);
      if (builtin) library.add(builtin, 'added', DEFAULT_MODEL_NAME);
    } catch (e) {
      console.warn(`the built-in model could not be set up: ${(e as Error).message}`);
      builtin = null;
    }
  }
  const models = { get: (id: number) => library.get(id), fallback: () => (builtin ? library.add(builtin, 'added', DEFAULT_MODEL_NAME) : null) };
  const chat = new ChatService(db, engine, models, bus, settings);
  const version = appVersion();
  let cpu: { isa: string; physicalCores: number } | null = null;

  const handlers: Handlers = {
    'app.info': async () => {
      cpu ??= await engine.cpu();
      return {
        version,
        dataDir: opts.dataDir,
        shell: opts.shell,
        cpu,
        discoveryFolders: discoveryFolders(home).map((f) => ({ source: f.source, path: f.path, exists: f.exists })),
      };
    },
    'settings.get': () => settings(),
    'settings.set': (patch) => setSettings(db, patch),
    'models.list': () => library.list(),
    'models.add': (p) => {
      const m = library.add(p.path);
      bus.emit('models.changed', { models: library.list() });
      return m;
    },
    'models.remove': async (p) => {
      if (engine.state.modelId === p.id && engine.state.status !== 'idle') await engine.unload();
      library.remove(p.id);
      bus.emit('models.changed', { models: library.list() });
      return { ok: true as const };
    },
    'models.refresh': () => {
      const models = library.refresh();
      bus.emit('models.changed', { models });
      return models;
    },
    'models.load': (p) => engine.load(library.get(p.id)),
    'models.unload': () => engine.unload(),
    'models.state': () => engine.state,
    'chat.list': () => chat.list(),
    'chat.get': (p) => chat.get(p.id),
    'chat.create': (p) => chat.create(p),
    'chat.update': (p) => chat.update(p),
    'chat.delete': async (p) => {
      await chat.delete(p.id);
      return { ok: true as const };
    },
    'chat.send': (p) => chat.send(p),
    'chat.regenerate': (p) => chat.regenerate(p.messageId),
    'chat.stop': async (p) => {
      await chat.stop(p.conversationId);
      return { ok: true as const };
    },
    'chat.selectLeaf': (p) => chat.selectLeaf(p.conversationId, p.leafId),
    ...workbenchHandlers(db),
  };

  return {
    handlers,
    bus,
    db,
    engine,
    engineClient,
    library,
    chat,
    async close() {
      closing = true;
      for (const c of chat.list()) await chat.stop(c.id);
      await engineClient.close();
      db.close();
    },
  };
}
