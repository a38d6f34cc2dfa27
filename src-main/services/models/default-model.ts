// The embedded default model (resources/default-model, written by scripts/make-default-model.ts):
// a model of under two megabytes that reasons in a think block, adds numbers and plays easy
// countdown, so that a fresh install chats offline at once. `aha generate` and the app use it when no other model is chosen.
import { cpSync, existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_MODEL_NAME = 'Aha tiny (built in)';

/**
 * The default model's folder, or null when this install has none. Looked for up the tree from
 * this module: the checkout (src-main/services/models under tsx), the built app (out/main), or a
 * package, where the model is unpacked beside app.asar (the engine cannot map a file inside it).
 */
export function defaultModelPath(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const folder = join(dir, 'resources', 'default-model');
    for (const p of [folder.replace('app.asar', 'app.asar.unpacked'), folder]) if (existsSync(join(p, 'config.json'))) return p;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/**
 * The default model copied into the app's data folder (models/default-model), so that its library
 * entry keeps one path across updates and AppImage mounts; copied again when the shipped weights
 * differ. Null when this install ships none.
 */
export function installDefaultModel(dataDir: string): string | null {
  const shipped = defaultModelPath();
  if (!shipped) return null;
  const dest = join(dataDir, 'models', 'default-model');
  const weights = (dir: string) => readFileSync(join(dir, 'model.safetensors'));
  if (existsSync(join(dest, 'model.safetensors')) && weights(dest).equals(weights(shipped))) return dest;
  const staged = `${dest}.tmp-${process.pid}`;
  rmSync(staged, { recursive: true, force: true });
  cpSync(shipped, staged, { recursive: true });
  rmSync(dest, { recursive: true, force: true });
  renameSync(staged, dest);
  return dest;
}
