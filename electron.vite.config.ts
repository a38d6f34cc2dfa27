// Build of the desktop app: Electron main (with the engine host as a second entry, out/main/host.js,
// started as a utilityProcess), the preload bridge (out/preload/index.cjs), and the Svelte renderer
// that `aha serve` also serves (out/renderer). A main or preload entry that does not exist yet is
// left out, so the renderer builds on its own while the rest is being written.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { defineConfig, type UserConfig } from 'electron-vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

const root = import.meta.dirname;
const at = (path: string) => resolve(root, path);

const mainEntries = Object.fromEntries(
  Object.entries({ main: 'src-main/main.ts', host: 'src-main/engine-host/host.ts' })
    .map(([name, path]) => [name, at(path)] as const)
    .filter(([, path]) => existsSync(path)),
);
const preloadEntry = at('src-main/preload/index.ts');

const config: UserConfig = {
  renderer: {
    root: at('src-renderer'),
    // Relative asset URLs: the same files load from file:// in Electron and over http from `aha serve`.
    base: './',
    plugins: [svelte()],
    build: {
      outDir: at('out/renderer'),
      emptyOutDir: true,
      target: 'chrome130',
      rolldownOptions: { input: at('src-renderer/index.html') },
    },
  },
};

if (mainEntries.main) {
  config.main = {
    build: {
      outDir: at('out/main'),
      // Dependencies stay in node_modules; the native addon and better-sqlite3 are never bundled.
      externalizeDeps: true,
      rolldownOptions: {
        input: mainEntries,
        external: [/\.node$/, 'better-sqlite3'],
      },
    },
  };
}

if (existsSync(preloadEntry)) {
  config.preload = {
    build: {
      outDir: at('out/preload'),
      // A sandboxed preload can only require('electron'): bundle everything else, as CommonJS.
      externalizeDeps: false,
      rolldownOptions: {
        input: { index: preloadEntry },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  };
}

export default defineConfig(config);
