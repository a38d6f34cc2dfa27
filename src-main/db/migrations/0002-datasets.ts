// Datasets of verifiable problems for training (GRPO, SFT) and grader configurations.
// An item's prompt is what the model is asked; `reference` is the answer a grader checks against,
// `solution` a worked solution (kept for SFT cold starts), `tests` the code tests, `meta` the
// facts a checker needs that are not text (a countdown's numbers and target).
// `content_hash` is a hash of the normalized prompt, for finding duplicates.
// A grader is a named configuration with versions: `config` holds {name, version, kind, options},
// its name and version copied into columns so the pair is unique and indexed.
import type { Migration } from './index.ts';

export const datasets: Migration = {
  version: 2,
  name: 'datasets',
  up(db) {
    db.exec(`
      CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL CHECK (name <> ''),
        description TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('math', 'code', 'chat', 'generic')),
        source TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX datasets_name ON datasets (name);
      CREATE INDEX datasets_updated_at ON datasets (updated_at DESC);

      CREATE TABLE dataset_items (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        prompt TEXT NOT NULL CHECK (trim(prompt) <> ''),
        reference TEXT,
        solution TEXT,
        tests TEXT CHECK (tests IS NULL OR json_type(tests) = 'object'),
        system_prompt TEXT,
        tags TEXT NOT NULL CHECK (json_type(tags) = 'array'),
        split TEXT CHECK (split IN ('train', 'eval')),
        meta TEXT NOT NULL CHECK (json_type(meta) = 'object'),
        content_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX dataset_items_position ON dataset_items (dataset_id, position);
      CREATE INDEX dataset_items_content_hash ON dataset_items (dataset_id, content_hash);
      CREATE INDEX dataset_items_split ON dataset_items (dataset_id, split, position);

      CREATE TABLE graders (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL CHECK (name <> ''),
        version INTEGER NOT NULL CHECK (version >= 1),
        config TEXT NOT NULL CHECK (
          json_type(config) = 'object'
          AND json_extract(config, '$.name') IS name
          AND json_extract(config, '$.version') IS version
          AND json_type(config, '$.kind') IS 'text'
          AND json_type(config, '$.options') IS 'object'
        ),
        created_at INTEGER NOT NULL
      ) STRICT;
      CREATE UNIQUE INDEX graders_name_version ON graders (name, version DESC);
    `);
  },
};
