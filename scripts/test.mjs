#!/usr/bin/env node
// `npm test`: everything that needs no GPU, ending with one line "N passed, N failed".
//   1. the native engine's C++ tests (op harness, formats, tiny models against the goldens)
//   2. TypeScript typecheck
//   3. the app's build (electron-vite: main, engine host, preload, renderer) and svelte-check
//   4. node:test suites (unit, integration, and e2e in Debian's Chromium) under Node ≥ 22
// Runs on the system Node too: when it is older than 22 the suites run under the Node 22
// that the `node` dev dependency installs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const only = process.argv.slice(2); // optional filters: "native", "fuzz", "types", "app", "node"

function nodeBinary() {
  if (Number(process.versions.node.split('.')[0]) >= 22) return process.execPath;
  const local = join(root, 'node_modules', 'node', 'bin', 'node');
  if (existsSync(local)) return local;
  const bin = join(root, 'node_modules', '.bin', 'node');
  if (existsSync(bin)) return bin;
  console.error('Node 22 or newer is needed for the tests: run `npm install` (it installs Node 22 as a dev dependency)');
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  process.stdout.write(r.stdout ?? '');
  process.stderr.write(r.stderr ?? '');
  return r;
}

function counts(text, passRe, failRe) {
  const p = [...text.matchAll(passRe)].pop();
  const f = [...text.matchAll(failRe)].pop();
  return { passed: p ? Number(p[1]) : 0, failed: f ? Number(f[1]) : 0, found: !!p };
}

let passed = 0;
let failed = 0;
/** One pass/fail line for a whole step. */
function check(ok, name) {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}`);
}
const want = (k) => only.length === 0 || only.includes(k);
const node = nodeBinary();

// Every temporary file of the run (test models, checkpoints, exports, the CLI's and the engine
// host's scratch) goes under one directory that is removed at the end, whatever the tests did:
// a run leaves nothing behind in /tmp. AHA_KEEP_TMP=1 keeps it for a post-mortem.
const runTmp = mkdtempSync(join(tmpdir(), 'aha-test-run-'));
process.env.TMPDIR = runTmp;
process.on('exit', () => {
  if (process.env.AHA_KEEP_TMP === '1') console.log(`kept the run's temporary files in ${runTmp}`);
  else rmSync(runTmp, { recursive: true, force: true });
});

// Tiny models first: both the C++ and the TS tests read them.
{
  const r = run(node, ['--import', 'tsx', 'tests/fixtures/make-tiny-models.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const s = run(node, ['--import', 'tsx', 'tests/fixtures/make-scripted-model.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const d = run(node, ['--import', 'tsx', 'tests/fixtures/make-tiny-deepseek.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0 || s.status !== 0 || d.status !== 0) {
    console.error('generating the tiny test models failed');
    failed++;
  }
}

if (want('native')) {
  const exe = ['native/build/native/aha_tests', 'native/build/aha_tests'].map((p) => join(root, p)).find(existsSync);
  if (!exe) {
    console.error('native/build/aha_tests is missing: run `npm install` (or `npm run build:native`)');
    failed++;
  } else {
    const r = run(exe, [], { env: { ...process.env, AHA_FIXTURES: join(root, 'tests/fixtures') } });
    const c = counts(r.stdout ?? '', /^(\d+) passed, \d+ failed$/gm, /^\d+ passed, (\d+) failed$/gm);
    passed += c.passed;
    failed += c.failed + (c.found && r.status === 0 ? 0 : c.found ? 0 : 1);
  }
}

if (want('fuzz')) {
  // libFuzzer over the GGUF and safetensors header parsers, briefly (needs clang; skipped with a line without it).
  const r = run('bash', ['scripts/fuzz.sh'], { env: { ...process.env, FUZZ_SECONDS: process.env.FUZZ_SECONDS ?? '10' } });
  const out = (r.stdout ?? '') + (r.stderr ?? '');
  if (/fuzz: skipped/.test(out)) console.log('skip fuzz (clang not installed)');
  else check(r.status === 0 && /fuzz: no crash/.test(out), 'fuzz header parsers');
}

if (want('types')) {
  const r = run(node, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json', '--noEmit']);
  check(r.status === 0, 'typecheck (tsc --noEmit)');
}

if (want('app')) {
  const b = run(node, [join(root, 'node_modules/electron-vite/bin/electron-vite.js'), 'build', '--logLevel', 'warn']);
  check(b.status === 0, 'build the app (electron-vite: main, engine host, preload, renderer)');
  const c = run(node, [join(root, 'node_modules/svelte-check/bin/svelte-check'), '--tsconfig', join(root, 'src-renderer/tsconfig.json'), '--output', 'human', '--threshold', 'warning']);
  check(c.status === 0, 'svelte-check (renderer types and a11y)');
}

const chromium = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
if (want('node')) {
  const dirs = ['tests/unit', 'tests/integration'];
  if (existsSync(chromium)) dirs.push('tests/e2e');
  else console.log(`skip e2e (no Chromium at ${chromium}: \`apt-get install chromium\`; .ci/run installs it)`);
  const files = dirs
    .filter((d) => existsSync(join(root, d)))
    .flatMap((d) => readdirSync(join(root, d)).filter((f) => f.endsWith('.test.ts')).map((f) => join(d, f)));
  if (files.length) {
    const r = run(node, ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=1', ...files]);
    const out = (r.stdout ?? '') + (r.stderr ?? '');
    const c = counts(out, /^ℹ pass (\d+)$/gm, /^ℹ fail (\d+)$/gm);
    passed += c.passed;
    failed += c.failed + (c.found ? 0 : 1);
  }
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
