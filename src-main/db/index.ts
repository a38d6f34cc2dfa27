// Opens Aha's SQLite database (better-sqlite3, WAL, foreign keys on) and brings its schema up to
// date. The schema version is SQLite's user_version: migration N leaves it at N.
import BetterSqlite3 from 'better-sqlite3';
import { migrations as allMigrations, type Migration } from './migrations/index.ts';

export type Database = BetterSqlite3.Database;

/** The database's schema version; refuses a file that is no database or is newer than `known`. */
function schemaVersion(db: Database, known: number, file: string): number {
  let version: number;
  try {
    version = db.pragma('user_version', { simple: true }) as number;
  } catch (e) {
    throw new Error(`${file}: not an Aha database (${(e as Error).message})`);
  }
  if (version > known)
    throw new Error(`${file} was written by a newer version of Aha (schema ${version}, this app knows ${known}); update Aha or move the file away`);
  return version;
}

/**
 * Runs the migrations newer than the database's user_version, each in its own transaction with
 * its version bump, so a failing one leaves the database at the previous version.
 */
export function migrate(db: Database, migrations: readonly Migration[] = allMigrations, file = db.name): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration "${m.name}" has version ${m.version}, expected ${i + 1}`);
  });
  const current = schemaVersion(db, migrations.length, file);
  for (const m of migrations.slice(current)) {
    db.transaction(() => {
      m.up(db);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}

/**
 * Opens (creating when absent) the database at `file` (":memory:" for tests) and migrates it.
 * A database written by a newer Aha is refused and left untouched.
 */
export function openDatabase(file: string): Database {
  let db: Database;
  try {
    db = new BetterSqlite3(file);
  } catch (e) {
    throw new Error(`${file}: cannot open the database (${(e as Error).message})`);
  }
  try {
    // Checked before anything is written: switching to WAL rewrites the file header.
    schemaVersion(db, allMigrations.length, file);
    db.pragma('busy_timeout = 5000');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    migrate(db, allMigrations, file);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}
