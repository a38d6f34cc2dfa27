#!/usr/bin/env node
// The `aha` command. TypeScript sources run through tsx's loader, so plain Node works after
// `npm install`. The app's database (better-sqlite3 13) needs Node 22 or newer: on an older Node
// the command runs itself again under the Node 22 that `npm install` puts in node_modules.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const node22 = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url));
if (Number(process.versions.node.split('.')[0]) < 22 && existsSync(node22) && !process.env.AHA_NO_REEXEC) {
  const child = spawn(node22, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, AHA_NO_REEXEC: '1' } });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  const { main } = await import('../src-main/cli/aha.ts');
  process.exitCode = await main(process.argv.slice(2));
}
