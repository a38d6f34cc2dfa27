#!/usr/bin/env node
// `npm start`: builds the app when its sources are newer than the build, then opens the desktop
// window. Where Electron's binary is absent (an offline install: it is downloaded on first use)
// it says so and serves the same app in a browser at a local URL instead (`aha serve`).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);

function node22() {
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;
  const local = join(root, 'node_modules/node/bin/node');
  if (existsSync(local)) return local;
  console.error('Aha needs Node 22 or newer: run `npm install` first (it installs one locally)');
  process.exit(1);
}

function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function buildIfStale() {
  const built = join(root, 'out/renderer/index.html');
  const sources = Math.max(newest(join(root, 'src-renderer')), newest(join(root, 'src-main')), statSync(join(root, 'electron.vite.config.ts')).mtimeMs);
  if (existsSync(built) && existsSync(join(root, 'out/main/main.js')) && statSync(built).mtimeMs >= sources) return;
  console.log('Building the app…');
  const r = spawnSync(node22(), [join(root, 'node_modules/electron-vite/bin/electron-vite.js'), 'build'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

/** The Electron executable, fetched on first use (Electron 45 downloads its binary lazily). */
function electronBinary() {
  const dir = join(root, 'node_modules/electron');
  const installed = () => {
    const pathFile = join(dir, 'path.txt');
    if (!existsSync(pathFile)) return null;
    const exe = join(dir, 'dist', readFileSync(pathFile, 'utf8').trim());
    return existsSync(exe) ? exe : null;
  };
  if (!existsSync(join(dir, 'install.js'))) return null;
  const found = installed();
  if (found) return found;
  console.log('Fetching the Electron binary (first start)…');
  const r = spawnSync(node22(), [join(dir, 'install.js')], { cwd: root, encoding: 'utf8', timeout: 300_000 });
  if (r.status === 0) return installed();
  const why = (r.stderr || r.error?.message || '').split('\n').find((l) => l.trim()) ?? `exit code ${r.status}`;
  console.log(`Could not fetch it (${why.trim()}).`);
  return null;
}

buildIfStale();
const electron = process.env.AHA_NO_ELECTRON ? null : electronBinary();
const hasDisplay = process.platform !== 'linux' || !!(process.env.DISPLAY || process.env.WAYLAND_DISPLAY);
let child;
if (electron && hasDisplay) {
  child = spawn(electron, [root, ...args], { stdio: 'inherit' });
} else {
  console.log(
    electron
      ? 'No display here: serving the app in a browser instead.'
      : "Electron's binary is not available (it could not be downloaded): serving the same app in a browser instead.",
  );
  child = spawn(node22(), [join(root, 'bin/aha.mjs'), 'serve', ...args], { stdio: 'inherit' });
}
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => process.exit(code ?? 0));
