// The model library's rows: one per GGUF file or Hugging Face folder, unique by path.
import type { ModelEntry } from '../contract/api.ts';
import type { Database } from './index.ts';

/** What inspecting a model's files gives; the library adds the rest. */
export type ModelFacts = Omit<ModelEntry, 'id' | 'source' | 'addedAt' | 'missing'>;

interface ModelRow {
  id: number;
  path: string;
  name: string;
  source: ModelEntry['source'];
  format: ModelEntry['format'];
  architecture: string;
  size_bytes: number;
  quantization: string;
  parameters: number;
  context_length: number;
  memory_estimate_bytes: number;
  missing: 0 | 1;
  added_at: number;
}

function toModelEntry(r: ModelRow): ModelEntry {
  return {
    id: r.id,
    path: r.path,
    name: r.name,
    source: r.source,
    format: r.format,
    architecture: r.architecture,
    sizeBytes: r.size_bytes,
    quantization: r.quantization,
    parameters: r.parameters,
    contextLength: r.context_length,
    memoryEstimateBytes: r.memory_estimate_bytes,
    missing: r.missing === 1,
    addedAt: r.added_at,
  };
}

export function listModels(db: Database): ModelEntry[] {
  const rows = db.prepare('SELECT * FROM models ORDER BY name COLLATE NOCASE, id').all() as ModelRow[];
  return rows.map(toModelEntry);
}

export function getModel(db: Database, id: number): ModelEntry | undefined {
  const row = db.prepare('SELECT * FROM models WHERE id = ?').get(id) as ModelRow | undefined;
  return row && toModelEntry(row);
}

export function getModelByPath(db: Database, path: string): ModelEntry | undefined {
  const row = db.prepare('SELECT * FROM models WHERE path = ?').get(path) as ModelRow | undefined;
  return row && toModelEntry(row);
}

/**
 * Inserts a model, or for a path already present refreshes what its files say and clears
 * `missing`, keeping its id, source and time added.
 */
export function upsertModel(db: Database, facts: ModelFacts, source: ModelEntry['source'], addedAt = Date.now()): ModelEntry {
  const row = db
    .prepare(
      `INSERT INTO models (path, name, source, format, architecture, size_bytes, quantization, parameters,
                           context_length, memory_estimate_bytes, missing, added_at)
       VALUES (@path, @name, @source, @format, @architecture, @sizeBytes, @quantization, @parameters,
               @contextLength, @memoryEstimateBytes, 0, @addedAt)
       ON CONFLICT (path) DO UPDATE SET
         name = excluded.name, format = excluded.format, architecture = excluded.architecture,
         size_bytes = excluded.size_bytes, quantization = excluded.quantization, parameters = excluded.parameters,
         context_length = excluded.context_length, memory_estimate_bytes = excluded.memory_estimate_bytes, missing = 0
       RETURNING *`,
    )
    .get({ ...facts, source, addedAt }) as ModelRow;
  return toModelEntry(row);
}

export function setModelMissing(db: Database, id: number, missing: boolean): void {
  db.prepare('UPDATE models SET missing = ? WHERE id = ?').run(missing ? 1 : 0, id);
}

/** Removes a model; conversations and messages that used it keep going with no model. */
export function removeModel(db: Database, id: number): boolean {
  return db.prepare('DELETE FROM models WHERE id = ?').run(id).changes > 0;
}
