// The model library: models the user added plus those found in LM Studio's and Ollama's folders,
// kept in the database. An entry whose file disappears stays, marked missing, until removed.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { ApiError, type ModelEntry, type ModelSource, type Settings } from '../../contract/api.ts';
import type { Database } from '../../db/index.ts';
import { getModel, getModelByPath, listModels, removeModel, setModelMissing, upsertModel, type ModelFacts } from '../../db/models.ts';
import { getSettings } from '../../db/settings.ts';
import { discoverModels, discoveryFolders } from './discover.ts';
import { inspectModel } from './inspect.ts';

export interface ModelLibraryOptions {
  /** Home folder whose LM Studio and Ollama folders `refresh` scans. */
  home?: string;
  /** Environment read for OLLAMA_MODELS. */
  env?: NodeJS.ProcessEnv;
  /** The settings in effect (the context length sizes the memory estimate's KV cache). */
  settings?: () => Settings;
  /** Where `refresh` reports what it skipped: unreadable manifests, models that cannot be read. */
  warn?: (message: string) => void;
}

export class ModelLibrary {
  private readonly home: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly settings: () => Settings;
  private readonly warn: (message: string) => void;

  constructor(
    private readonly db: Database,
    opts: ModelLibraryOptions = {},
  ) {
    this.home = opts.home ?? homedir();
    this.env = opts.env ?? process.env;
    this.settings = opts.settings ?? (() => getSettings(db));
    this.warn = opts.warn ?? ((message) => console.warn(`models: ${message}`));
  }

  list(): ModelEntry[] {
    return listModels(this.db);
  }

  get(id: number): ModelEntry {
    const model = getModel(this.db, id);
    if (!model) throw new ApiError('not_found', `no model with id ${id}`);
    return model;
  }

  /**
   * Adds a GGUF file or a Hugging Face folder, reading its headers. A path already in the
   * library gives its entry (re-read if it was missing and is back).
   */
  add(path: string, source: ModelSource = 'added', name?: string): ModelEntry {
    const abs = resolve(path);
    const known = getModelByPath(this.db, abs);
    if (known && !known.missing) return known;
    const facts = this.inspect(abs);
    return upsertModel(this.db, { ...facts, name: name ?? facts.name }, source);
  }

  private inspect(path: string): ModelFacts {
    try {
      return inspectModel(path, this.settings().contextLength);
    } catch (e) {
      throw new ApiError('invalid_request', (e as Error).message);
    }
  }

  remove(id: number): void {
    if (!removeModel(this.db, id)) throw new ApiError('not_found', `no model with id ${id}`);
  }

  /**
   * Scans the discovery folders and adds what is new, then re-checks every entry: one whose
   * file is gone is marked missing, one that came back is read again and unmarked. What cannot
   * be read is left out and reported through `warn`.
   */
  refresh(): ModelEntry[] {
    const { models: found, warnings } = discoverModels(discoveryFolders(this.home, this.env));
    for (const w of warnings) this.warn(w);
    for (const m of found) {
      if (getModelByPath(this.db, m.path)) continue;
      try {
        this.add(m.path, m.source, m.name);
      } catch (e) {
        this.warn((e as Error).message);
      }
    }
    for (const model of this.list()) {
      const present = existsSync(model.path);
      if (present === !model.missing) continue;
      if (!present) {
        setModelMissing(this.db, model.id, true);
        continue;
      }
      try {
        this.add(model.path, model.source, model.name);
      } catch (e) {
        this.warn((e as Error).message);
      }
    }
    return this.list();
  }
}
