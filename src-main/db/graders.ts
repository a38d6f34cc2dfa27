// Grader configurations: named, versioned JSON ({name, version, kind, options}). The grader code
// reads `kind` and `options`; this layer only keeps them valid and versioned. Saving a grader
// adds a version; old versions stay, so a training run can name the exact configuration it used.
import { z } from 'zod';
import type { Database } from './index.ts';

export const GraderConfig = z
  .object({
    name: z.string().trim().min(1).max(200),
    version: z.number().int().min(1),
    /** Which grader runs ("math", "format", "code", "countdown", a weighted sum...). */
    kind: z.string().trim().min(1).max(100),
    description: z.string().max(2000).optional(),
    /** Absent options are stored as {}. */
    options: z.record(z.string(), z.json()).default({}),
  })
  .strict();
export type GraderConfig = z.output<typeof GraderConfig>;

export interface StoredGrader {
  id: number;
  config: GraderConfig;
  createdAt: number;
}

interface GraderRow {
  id: number;
  name: string;
  version: number;
  config: string;
  created_at: number;
}

// The table's CHECK keeps name, version, kind and options well formed, so a stored row parses.
const toGrader = (r: GraderRow): StoredGrader => ({ id: r.id, config: JSON.parse(r.config) as GraderConfig, createdAt: r.created_at });

export type NewGraderConfig = Omit<z.input<typeof GraderConfig>, 'version'> & { version?: number };

/**
 * Stores a configuration as a new version of its name: the one given, else one past the latest.
 * A version that exists already is refused (versions are never overwritten).
 */
export function saveGrader(db: Database, config: NewGraderConfig, now = Date.now()): StoredGrader {
  return db.transaction(() => {
    const latest = db.prepare('SELECT max(version) AS v FROM graders WHERE name = ?').get(config.name.trim()) as { v: number | null };
    const parsed = GraderConfig.safeParse({ ...config, version: config.version ?? (latest.v ?? 0) + 1 });
    if (!parsed.success) throw new Error(`invalid grader configuration: ${z.prettifyError(parsed.error)}`);
    const c = parsed.data;
    try {
      const row = db
        .prepare('INSERT INTO graders (name, version, config, created_at) VALUES (?, ?, ?, ?) RETURNING *')
        .get(c.name, c.version, JSON.stringify(c), now) as GraderRow;
      return toGrader(row);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new Error(`grader "${c.name}" already has a version ${c.version}`);
      throw e;
    }
  })();
}

/** The given version of a grader, or its latest when no version is given. */
export function getGrader(db: Database, name: string, version?: number): StoredGrader | undefined {
  const row = (
    version === undefined
      ? db.prepare('SELECT * FROM graders WHERE name = ? ORDER BY version DESC LIMIT 1').get(name)
      : db.prepare('SELECT * FROM graders WHERE name = ? AND version = ?').get(name, version)
  ) as GraderRow | undefined;
  return row && toGrader(row);
}

/** The latest version of every grader, by name. */
export function listGraders(db: Database): StoredGrader[] {
  const rows = db
    .prepare(
      `SELECT g.* FROM graders AS g
       WHERE g.version = (SELECT max(version) FROM graders WHERE name = g.name)
       ORDER BY g.name`,
    )
    .all() as GraderRow[];
  return rows.map(toGrader);
}

/** Every version of one grader, newest first. */
export function listGraderVersions(db: Database, name: string): StoredGrader[] {
  const rows = db.prepare('SELECT * FROM graders WHERE name = ? ORDER BY version DESC').all(name) as GraderRow[];
  return rows.map(toGrader);
}

/** Deletes one version of a grader, or all of them when no version is given; returns how many. */
export function deleteGrader(db: Database, name: string, version?: number): number {
  return version === undefined
    ? db.prepare('DELETE FROM graders WHERE name = ?').run(name).changes
    : db.prepare('DELETE FROM graders WHERE name = ? AND version = ?').run(name, version).changes;
}
