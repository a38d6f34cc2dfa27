// Settings: one row per top-level key, the value as JSON. Reads merge the stored values over the
// contract's defaults, field by field, so a corrupt or outdated value falls back to its default.
import { z } from 'zod';
import { Settings, defaultSettings } from '../contract/api.ts';
import type { Database } from './index.ts';
import { validOr } from './json.ts';

export function getSettings(db: Database): Settings {
  const rows = db.prepare('SELECT key, value FROM settings').all() as Array<{ key: string; value: string }>;
  const stored: Record<string, unknown> = {};
  for (const { key, value } of rows) stored[key] = JSON.parse(value);
  return validOr(Settings, defaultSettings, stored);
}

const SettingsPatch = Settings.partial().strict();

/** Stores the given keys (undefined ones are left as they are) and returns the settings now in effect. */
export function setSettings(db: Database, patch: Partial<Settings>): Settings {
  const parsed = SettingsPatch.safeParse(patch);
  if (!parsed.success) throw new Error(`invalid settings: ${z.prettifyError(parsed.error)}`);
  const entries = Object.entries(parsed.data).filter(([, v]) => v !== undefined);
  const put = db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value');
  db.transaction(() => {
    for (const [key, value] of entries) put.run(key, JSON.stringify(value));
  })();
  return getSettings(db);
}
