#!/usr/bin/env node
// `npm run build`: electron-vite build (main, engine host, preload, renderer → out/) under Node 22.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const local = join(root, 'node_modules/node/bin/node');
const node = Number(process.versions.node.split('.')[0]) >= 22 || !existsSync(local) ? process.execPath : local;
const r = spawnSync(node, [join(root, 'node_modules/electron-vite/bin/electron-vite.js'), 'build', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
