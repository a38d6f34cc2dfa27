// Build of the desktop app: Electron main (with the engine host as a second entry, out/main/host.js,
// started as a utilityProcess), the preload bridge (out/preload/index.cjs), and the Svelte renderer
// that `aha serve` also serves (out/renderer).
import { resolve } from 'node:path';
import { defineConfig } from 'electron-vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';

const root = import.meta.dirname;
const at = (path: string) => resolve(root, path);

export default defineConfig({
  main: {
    build: {
      outDir: at('out/main'),
      // Dependencies stay in node_modules; the native addon and better-sqlite3 are never bundled.
      externalizeDeps: true,
      rolldownOptions: {
        input: { main: at('src-main/main.ts'), host: at('src-main/engine-host/host.ts') },
        external: [/\.node$/, 'better-sqlite3'],
      },
    },
  },
  preload: {
    build: {
      outDir: at('out/preload'),
      // A sandboxed preload can only require('electron'): bundle everything else, as CommonJS.
      externalizeDeps: false,
      rolldownOptions: {
        input: { index: at('src-main/preload/index.ts') },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
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
});
