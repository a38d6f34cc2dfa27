// Models other apps have downloaded: LM Studio keeps GGUF files as <publisher>/<model>/<file>.gguf;
// Ollama keeps manifests (manifests/<host>/<namespace>/<model>/<tag>, JSON) whose model layer
// names a blob (blobs/sha256-<hex>), which is a plain GGUF file. Discovery only lists candidate
// paths; a folder that is absent gives nothing, an unreadable entry a warning, never an error.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ModelSource } from '../../contract/api.ts';

export type DiscoverySource = Exclude<ModelSource, 'added'>;

export interface DiscoveryFolder {
  source: DiscoverySource;
  path: string;
  exists: boolean;
}

export interface DiscoveredModel {
  source: DiscoverySource;
  path: string;
  /** The name the other app shows, where it differs from what the file says (Ollama's model:tag). */
  name?: string;
}

/** The folders scanned for models, whether they exist or not: LM Studio's two, then Ollama's. */
export function discoveryFolders(home: string = homedir(), env: NodeJS.ProcessEnv = process.env): DiscoveryFolder[] {
  const candidates: Array<[DiscoverySource, string]> = [
    ['lmstudio', join(home, '.lmstudio', 'models')],
    ['lmstudio', join(home, '.cache', 'lm-studio', 'models')],
    ['ollama', join(home, '.ollama', 'models')],
  ];
  if (env.OLLAMA_MODELS) candidates.push(['ollama', resolve(env.OLLAMA_MODELS)]);
  const seen = new Set<string>();
  return candidates
    .filter(([, path]) => !seen.has(path) && seen.add(path))
    .map(([source, path]) => ({ source, path, exists: existsSync(path) }));
}

/** Candidate model paths under the folders, in a stable order, each path once. */
export function discoverModels(folders: ReadonlyArray<Pick<DiscoveryFolder, 'source' | 'path'>>): { models: DiscoveredModel[]; warnings: string[] } {
  const warnings: string[] = [];
  const byPath = new Map<string, DiscoveredModel>();
  for (const folder of folders) {
    const found = folder.source === 'lmstudio' ? lmStudioModels(folder.path, warnings) : ollamaModels(folder.path, warnings);
    for (const m of found) {
      const seen = byPath.get(m.path);
      // Ollama tags sharing one blob: keep the specific tag over "latest".
      if (!seen || seen.name?.endsWith(':latest')) byPath.set(m.path, m);
    }
  }
  return { models: [...byPath.values()], warnings };
}

/** A folder's entries, sorted; [] when it does not exist, with a warning when it cannot be read. */
function list(dir: string, warnings: string[]): string[] {
  try {
    return readdirSync(dir).filter((n) => !n.startsWith('.')).sort();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') warnings.push(`${dir}: cannot read (${code ?? (e as Error).message})`);
    return [];
  }
}

/** Follows symlinks; undefined for a broken one. */
function kind(path: string): 'file' | 'dir' | undefined {
  try {
    const st = statSync(path);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : undefined;
  } catch {
    return undefined;
  }
}

function lmStudioModels(root: string, warnings: string[]): DiscoveredModel[] {
  const out: DiscoveredModel[] = [];
  for (const publisher of list(root, warnings)) {
    const pubDir = join(root, publisher);
    if (kind(pubDir) !== 'dir') continue;
    for (const model of list(pubDir, warnings)) {
      const modelDir = join(pubDir, model);
      if (kind(modelDir) !== 'dir') continue;
      for (const file of list(modelDir, warnings)) {
        const path = join(modelDir, file);
        // mmproj-*.gguf files are vision projectors that go with a model, not models.
        if (/\.gguf$/i.test(file) && !/^mmproj/i.test(file) && kind(path) === 'file') out.push({ source: 'lmstudio', path });
      }
    }
  }
  return out;
}

const OLLAMA_MODEL_LAYER = 'application/vnd.ollama.image.model';

/** Ollama's own name for a manifest: "model:tag" for its library, with namespace and host otherwise. */
function ollamaName(host: string, namespace: string, model: string, tag: string): string {
  if (host !== 'registry.ollama.ai') return `${host}/${namespace}/${model}:${tag}`;
  return namespace === 'library' ? `${model}:${tag}` : `${namespace}/${model}:${tag}`;
}

function ollamaModels(root: string, warnings: string[]): DiscoveredModel[] {
  const out: DiscoveredModel[] = [];
  const manifests = join(root, 'manifests');
  for (const host of list(manifests, warnings))
    for (const namespace of list(join(manifests, host), warnings))
      for (const model of list(join(manifests, host, namespace), warnings))
        for (const tag of list(join(manifests, host, namespace, model), warnings)) {
          const file = join(manifests, host, namespace, model, tag);
          if (kind(file) !== 'file') continue;
          const blob = ollamaModelBlob(root, file, warnings);
          if (blob) out.push({ source: 'ollama', path: blob, name: ollamaName(host, namespace, model, tag) });
        }
  return out;
}

/** The model blob a manifest names, or undefined (with a warning) when it names none or it is gone. */
function ollamaModelBlob(root: string, manifestFile: string, warnings: string[]): string | undefined {
  const skip = (why: string) => {
    warnings.push(`${manifestFile}: skipped (${why})`);
    return undefined;
  };
  let manifest: unknown;
  try {
    manifest = JSON.parse(readFileSync(manifestFile, 'utf8'));
  } catch (e) {
    return skip(e instanceof SyntaxError ? 'not JSON' : `cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const layers = (manifest as { layers?: unknown } | null)?.layers;
  if (!Array.isArray(layers)) return skip('no layers');
  const layer = layers.find((l): l is { digest: unknown } => (l as { mediaType?: unknown } | null)?.mediaType === OLLAMA_MODEL_LAYER);
  if (!layer) return skip('no model layer');
  const digest = typeof layer.digest === 'string' ? /^sha256:([0-9a-f]{64})$/.exec(layer.digest) : null;
  if (!digest) return skip(`bad model layer digest ${JSON.stringify(layer.digest)}`);
  const blob = join(root, 'blobs', `sha256-${digest[1]}`);
  if (kind(blob) !== 'file') return skip(`its model blob ${blob} is missing`);
  return blob;
}
