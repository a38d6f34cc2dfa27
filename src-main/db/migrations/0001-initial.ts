// The first schema: the model library, conversations as message trees, and settings.
// Times are milliseconds since the epoch; JSON columns are checked with json_valid.
import type { Migration } from './index.ts';

export const initial: Migration = {
  version: 1,
  name: 'initial',
  up(db) {
    db.exec(`
      CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        name TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('added', 'lmstudio', 'ollama')),
        format TEXT NOT NULL CHECK (format IN ('gguf', 'safetensors')),
        architecture TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        quantization TEXT NOT NULL,
        parameters INTEGER NOT NULL,
        context_length INTEGER NOT NULL,
        memory_estimate_bytes INTEGER NOT NULL,
        missing INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1)),
        added_at INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX models_path ON models (path);

      CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model_id INTEGER REFERENCES models (id) ON DELETE SET NULL,
        system_prompt TEXT NOT NULL,
        sampling TEXT NOT NULL CHECK (json_valid(sampling)),
        leaf_id INTEGER REFERENCES messages (id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX conversations_updated_at ON conversations (updated_at DESC);
      CREATE INDEX conversations_model_id ON conversations (model_id);
      CREATE INDEX conversations_leaf_id ON conversations (leaf_id);

      -- A message's parent lies in the same conversation: the (conversation_id, parent_id) key
      -- points at (conversation_id, id). Deleting a message deletes the branches under it.
      CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
        parent_id INTEGER,
        role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
        content TEXT NOT NULL,
        reasoning TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('streaming', 'done', 'stopped', 'error')),
        error TEXT,
        model_id INTEGER REFERENCES models (id) ON DELETE SET NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        reasoning_ms REAL NOT NULL,
        total_ms REAL NOT NULL,
        created_at INTEGER NOT NULL,
        FOREIGN KEY (conversation_id, parent_id) REFERENCES messages (conversation_id, id) ON DELETE CASCADE
      ) STRICT;
      CREATE UNIQUE INDEX messages_conversation_id ON messages (conversation_id, id);
      CREATE INDEX messages_parent_id ON messages (conversation_id, parent_id);
      CREATE INDEX messages_model_id ON messages (model_id);
      CREATE INDEX messages_streaming ON messages (status) WHERE status = 'streaming';

      CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL CHECK (json_valid(value))
      ) STRICT, WITHOUT ROWID;
    `);
  },
};
