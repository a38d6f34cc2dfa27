// The code grader's sandbox against hostile programs. Each attack is written so that the attack SUCCEEDING makes the
// item's test pass (score 1): a score of 0 therefore proves the attack failed, and out-of-band checks (the listener saw no
// connection, no file appeared, no process of the run survives, the host can still fork) prove it harmed nothing.
// Needs root and util-linux (unshare, setpriv, prlimit); elsewhere the suite checks that runs fail closed instead.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { gradeCode } from '../../src-main/services/graders/code.ts';
import { runSandboxed, sandboxSupport, SandboxPool, SandboxUnavailableError } from '../../src-main/services/graders/sandbox.ts';

const support = sandboxSupport();
// Skip only where the sandbox cannot exist (not root, not Linux, a tool missing). A failing probe on a capable machine is a
// failure: the tests then run and throw SandboxUnavailableError.
const skip = support.ok || /probe failed/.test(support.reason) ? false : `sandbox unavailable here: ${support.reason}`;
const fixtures = path.resolve(import.meta.dirname, '../fixtures/graders');
// Folders "outside /tmp and every HOME" for the root-mode attacks: the repo's fixtures, unless the checkout itself
// lies in a folder the sandbox hides (a CI clone under /tmp), then a fresh folder under /mnt.
const hiddenBySandbox = ['/tmp', '/var/tmp', '/root', '/home', '/run'].some((d) => fs.realpathSync(fixtures).startsWith(d + '/'));
let outsideBase = fixtures;
function outsideDir(prefix: string): string {
  if (hiddenBySandbox && outsideBase === fixtures) {
    outsideBase = fs.mkdtempSync('/mnt/aha-sandbox-test-');
    fs.chmodSync(outsideBase, 0o755); // world-traversable, like the repo's folders
  }
  return fs.mkdtempSync(path.join(outsideBase, prefix));
}
const pool = new SandboxPool(2);
const limits = { wallMs: 4000, cpuSeconds: 3, memoryBytes: 256 * 2 ** 20, maxProcesses: 32 };

const py = (code: string) => '```python\n' + code + '\n```';
const js = (code: string) => '```javascript\n' + code + '\n```';

/** Processes running as a sandbox uid (all sandbox uids are ≥ 2,000,000). */
function sandboxProcesses(): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const uid = Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]);
      if (uid >= 2_000_000) out.push(Number(name));
    } catch { /* gone */ }
  }
  return out;
}

function processesOf(uid: number): number {
  let n = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]) === uid) n++;
    } catch { /* gone */ }
  }
  return n;
}

function workDirs(): string[] {
  return fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith('aha-sbx-'));
}

async function grade(completion: string, reference: unknown, wallMs = limits.wallMs) {
  return gradeCode(completion, reference, { limits: { ...limits, wallMs } }, pool);
}

test('fails closed: when the sandbox cannot be built, running code throws instead of running unsandboxed', { skip: skip === false ? 'the sandbox can be built here' : false }, async () => {
  await assert.rejects(runSandboxed({ runtime: 'python', files: { 'main.py': 'print(1)' }, main: 'main.py' }), SandboxUnavailableError);
});

test('fails closed for real: where namespaces cannot be made, SandboxUnavailableError, and the code never runs', { skip: skip === false ? false : 'needs a working sandbox to build the broken one' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aha-test-closed-'));
  fs.chmodSync(dir, 0o777);
  const marker = path.join(dir, 'ran');
  // Inside a user namespace that forbids further user namespaces and maps only root: neither mode can be built.
  const inner = `echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" --import tsx "$1" "$2"`;
  const r = spawnSync('unshare', ['--user', '--map-root-user', 'sh', '-c', inner, process.execPath, path.join(fixtures, 'fail-closed.mts'), marker],
    { cwd: path.resolve(import.meta.dirname, '../..'), encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir } });
  try {
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /SandboxUnavailableError: code sandbox unavailable: probe failed/);
    assert.match(r.stdout, /gradeCode threw SandboxUnavailableError/);
    assert.equal(fs.existsSync(marker), false, 'the program ran unsandboxed');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The userns test runs the project's own files as nobody: the checkout and this Node must be reachable by nobody
// (a clone inside a private `mktemp -d` folder is not).
function usernsSkip(): string | false {
  if (skip !== false || process.getuid?.() !== 0) return 'needs root to start a process as nobody';
  const reach = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', 'test -r "$0" && test -x "$1"', path.join(fixtures, 'userns-mode.mts'), process.execPath]);
  return reach.status === 0 ? false : `nobody cannot reach this checkout or its Node (${path.resolve(import.meta.dirname, '../..')}: a parent folder is private)`;
}

test('userns mode (an ordinary user, as the desktop app runs): the same attacks score 0', { skip: usernsSkip() }, async () => {
  const NOBODY = 65534;
  const baseline = processesOf(NOBODY);
  const home = fs.mkdtempSync(path.join(fixtures, 'nobody-home-'));
  const outside = fs.mkdtempSync(path.join(fixtures, 'nobody-out-'));
  let connections = 0;
  const server = net.createServer((s) => { connections++; s.end(); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  try {
    const key = path.join(home, '.ssh', 'id_rsa');
    fs.mkdirSync(path.dirname(key), { mode: 0o700 });
    fs.writeFileSync(key, '-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n', { mode: 0o600 });
    for (const p of [home, path.dirname(key), key, outside]) fs.chownSync(p, NOBODY, NOBODY);
    const asNobody = (cmd: string[], env: Record<string, string>) => spawnSync('setpriv', [`--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', ...cmd],
      { cwd: path.resolve(import.meta.dirname, '../..'), encoding: 'utf8', env: { PATH: '/usr/bin:/bin', ...env }, timeout: 120_000 });
    // Control: without the sandbox, nobody can read its key and write its directory.
    assert.equal(asNobody(['cat', key], {}).status, 0);
    assert.equal(asNobody(['touch', path.join(outside, 'control')], {}).status, 0);
    fs.rmSync(path.join(outside, 'control'));
    const port = (server.address() as net.AddressInfo).port;
    const r = asNobody([process.execPath, '--import', 'tsx', path.join(fixtures, 'userns-mode.mts'), JSON.stringify({ key, outside, port })], { HOME: home });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}');
    assert.deepEqual(out, { support: { ok: true, mode: 'userns' }, honest: 1, ssh: 0, socket: 0, write: 0, own: 1, bomb: 0, caps: 0 });
    assert.equal(connections, 0);
    assert.deepEqual(fs.readdirSync(outside), []);
    // Nothing of nobody's outlives the run (the fixture's own helpers may take a moment to exit).
    const t0 = Date.now();
    while (processesOf(NOBODY) > baseline && Date.now() - t0 < 5000) await new Promise((res) => setTimeout(res, 100));
    assert.equal(processesOf(NOBODY), baseline);
  } finally {
    server.close();
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('honest code: python and javascript, assertion tests and stdin/stdout cases, partial scores', { skip }, async () => {
  const before = workDirs().length;
  const add = py('def add(a, b):\n    return a + b');
  assert.equal((await grade(add, { tests: ['assert add(1, 2) == 3', 'assert add(-1, 1) == 0'] })).score, 1);
  const half = await grade(add, { tests: ['assert add(1, 2) == 3', 'assert add(1, 2) == 4'] });
  assert.equal(half.score, 0.5);
  assert.match(half.explanation, /1\/2 tests passed.*AssertionError/);
  const echo = py('import sys\nfor line in sys.stdin:\n    print(int(line) * 2)');
  assert.equal((await grade(echo, { cases: [{ input: '1\n2\n', output: '2\n4\n' }, { input: '5\n', output: '10' }, { input: '5\n', output: '11' }] })).score, 2 / 3);
  const jsAdd = js('function add(a, b) { return a + b; }');
  assert.equal((await grade(jsAdd, { tests: ['if (add(2, 2) !== 4) throw new Error("bad")', 'require("assert").strictEqual(add(1, 1), 2)'] })).score, 1);
  assert.equal((await grade(jsAdd, { language: 'javascript', tests: ['if (add(2, 2) !== 5) throw new Error("bad")'] })).score, 0);
  const jsEcho = js('const s = require("fs").readFileSync(0, "utf8"); console.log(s.trim().split(/\\s+/).map(Number).reduce((a, b) => a + b, 0))');
  assert.equal((await grade(jsEcho, { cases: [{ input: '1 2 3', output: '6' }] })).score, 1);
  // An untagged block takes the reference's language.
  assert.equal((await grade('```\nprint(7)\n```', { language: 'python', cases: [{ input: '', output: '7' }] })).score, 1);
  // Exiting early with success does not pass a test it never ran.
  const quitter = py('import sys\nsys.exit(0)');
  assert.equal((await grade(quitter, { tests: ['assert False'] })).score, 0);
  const jsQuitter = js('process.exit(0)');
  assert.equal((await grade(jsQuitter, { tests: ['throw new Error("never")'] })).score, 0);
  // Each run's work directory is deleted.
  assert.equal(workDirs().length, before);
});

test('hostile: a fork bomb scores 0, is contained by RLIMIT_NPROC and the PID namespace, and leaves no process behind', { skip }, async () => {
  const t0 = Date.now();
  const bomb = py('import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass');
  // The attack "wins" if the test ever runs: it never does (the bomb never returns), and the run is killed at the wall limit.
  const r = await grade(bomb, { tests: ['assert True'] }, 3000);
  assert.equal(r.score, 0);
  assert.match(r.explanation, /timed out/);
  const jsBomb = js('const { spawn } = require("child_process");\nfor (;;) { try { spawn(process.execPath, ["-e", "setInterval(()=>{},1000)"], { detached: true }); } catch {} }');
  assert.equal((await grade(jsBomb, { tests: ['true'] }, 3000)).score, 0);
  assert.ok(Date.now() - t0 < 15000, `took ${Date.now() - t0} ms`);
  assert.deepEqual(sandboxProcesses(), []);
  // The host can still start processes.
  assert.equal(spawnSync('true').status, 0);
  // A bomb that detaches into its own session (setsid) and outlives its parent still dies with the namespace.
  const escaper = py('import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nelse:\n    print("parent done")');
  await grade(escaper, { tests: ['assert True'] });
  assert.deepEqual(sandboxProcesses(), []);
});

test('hostile: an endless loop scores 0 and is killed at the wall-clock limit (and by RLIMIT_CPU)', { skip }, async () => {
  const t0 = Date.now();
  const r = await grade(py('while True:\n    pass'), { tests: ['assert True'] }, 1500);
  assert.equal(r.score, 0);
  assert.match(r.explanation, /timed out|SIGKILL|SIGXCPU/);
  assert.ok(Date.now() - t0 < 4000, `took ${Date.now() - t0} ms`);
  // CPU limit alone (wall limit far away): RLIMIT_CPU stops it after ~1 s of CPU.
  const cpu = await runSandboxed({ runtime: 'javascript', files: { 'main.js': 'for (;;) {}' }, main: 'main.js', limits: { wallMs: 20000, cpuSeconds: 1 } });
  assert.equal(cpu.timedOut, false);
  assert.ok(cpu.signal === 'SIGXCPU' || cpu.signal === 'SIGKILL' || cpu.exitCode !== 0, JSON.stringify(cpu));
  assert.ok(cpu.wallMs < 10000);
  assert.deepEqual(sandboxProcesses(), []);
});

test('hostile: a huge allocation scores 0 (RLIMIT_AS), fast, without touching the host', { skip }, async () => {
  const t0 = Date.now();
  // The attack wins if it gets 4 GiB (and the test then passes).
  const r = await grade(py('x = bytearray(4 * 1024 ** 3)\nx[-1] = 1'), { tests: ['assert len(x) == 4 * 1024 ** 3'] });
  assert.equal(r.score, 0);
  assert.match(r.explanation, /MemoryError/);
  const jsHog = js('const a = []; for (let i = 0; i < 4096; i++) a.push(Buffer.alloc(1 << 20, 1));');
  assert.equal((await grade(jsHog, { tests: ['if (a.length !== 4096) throw new Error("short")'] })).score, 0);
  // Under the limit is fine.
  assert.equal((await grade(py('x = bytearray(32 * 1024 ** 2)'), { tests: ['assert len(x) == 32 * 1024 ** 2'] })).score, 1);
  assert.ok(Date.now() - t0 < 15000);
});

test('hostile: reading ~/.ssh scores 0: the inherited HOME is gone, other files are hidden or unreadable', { skip }, async () => {
  // Fake HOMEs: one outside /tmp, one inside /tmp; both are covered by a fresh tmpfs inside the sandbox.
  const homes = [outsideDir('home-'), fs.mkdtempSync(path.join(os.tmpdir(), 'aha-test-home-'))];
  // And a root-only key outside any HOME and outside /tmp, in a world-readable directory: only the uid drop protects it.
  const elsewhere = outsideDir('keys-');
  const savedHome = process.env.HOME;
  try {
    fs.chmodSync(elsewhere, 0o755);
    fs.writeFileSync(path.join(elsewhere, 'id_rsa'), '-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n', { mode: 0o600 });
    fs.writeFileSync(path.join(elsewhere, 'public.txt'), 'readable by anyone', { mode: 0o644 });
    for (const home of homes) {
      fs.chmodSync(home, 0o755);
      fs.mkdirSync(path.join(home, '.ssh'), { mode: 0o700 });
      fs.writeFileSync(path.join(home, '.ssh', 'id_rsa'), '-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n', { mode: 0o600 });
      process.env.HOME = home;
      process.env.AWS_SECRET_ACCESS_KEY = 'leak-me';
      const paths = [path.join(home, '.ssh', 'id_rsa'), path.join(elsewhere, 'id_rsa'), '/root/.ssh/id_rsa'];
      const attack = py([
        'import os',
        'def steal(p):',
        '    try:',
        '        return open(os.path.expanduser(p)).read()',
        '    except OSError as e:',
        '        return str(e)',
      ].join('\n'));
      // The attack wins a test for each path that yields the key, or if the parent's environment leaked in.
      const r = await grade(attack, { tests: [
        ...['~/.ssh/id_rsa', ...paths].map((p) => `assert steal(${JSON.stringify(p)}).startswith("-----BEGIN"), steal(${JSON.stringify(p)})`),
        'assert os.environ.get("AWS_SECRET_ACCESS_KEY") == "leak-me"',
        `assert os.environ.get("HOME") == ${JSON.stringify(home)}`,
      ] });
      assert.equal(r.score, 0, r.explanation);
      const why = (r.details as { tests: Array<{ why: string }> }).tests.map((t) => t.why).join('\n');
      assert.match(why, /Permission denied/); // the root-only key: the uid drop
      assert.match(why, /No such file/); // the hidden homes
      // Control: the same reader works on a file it may read, so a 0 above is the sandbox, not a broken harness.
      const c = await grade(attack, { tests: [`assert steal(${JSON.stringify(path.join(elsewhere, 'public.txt'))}) == "readable by anyone"`] });
      assert.equal(c.score, 1, c.explanation);
    }
  } finally {
    process.env.HOME = savedHome;
    delete process.env.AWS_SECRET_ACCESS_KEY;
    for (const h of [...homes, elsewhere]) fs.rmSync(h, { recursive: true, force: true });
  }
});

test('hostile: opening a socket scores 0 and the local listener never sees a connection', { skip }, async () => {
  let connections = 0;
  const server = net.createServer((s) => { connections++; s.end(); });
  await new Promise<void>((r) => server.listen(0, '0.0.0.0', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const hosts = ['127.0.0.1', ...Object.values(os.networkInterfaces()).flat().filter((i) => i && i.family === 'IPv4' && !i.internal).map((i) => i!.address)];
  try {
    const attack = py([
      'import socket',
      'def connect(host):',
      '    s = socket.create_connection((host, ' + port + '), timeout=2)',
      '    s.close()',
      '    return True',
    ].join('\n'));
    const r = await grade(attack, { tests: hosts.map((h) => `assert connect(${JSON.stringify(h)})`) });
    assert.equal(r.score, 0, r.explanation);
    assert.match(r.explanation, /Network is unreachable|Connection refused|timed out/);
    const jsAttack = js(`const net = require('net');\nconst s = net.connect(${port}, '127.0.0.1');\ns.on('connect', () => { console.log('CONNECTED'); process.exit(0); });\ns.on('error', (e) => { console.error(e.message); process.exit(3); });`);
    assert.equal((await grade(jsAttack, { language: 'javascript', cases: [{ input: '', output: 'CONNECTED' }] })).score, 0);
    // Control: the listener does accept connections from outside the sandbox.
    await new Promise<void>((res, rej) => { const s = net.connect(port, '127.0.0.1', () => { s.end(); res(); }); s.on('error', rej); });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(connections, 1, 'only the control connection reached the listener');
  } finally {
    server.close();
  }
});

test('hostile: writing outside its directory scores 0 and creates nothing', { skip }, async () => {
  // World-writable host directories, so only the sandbox (a fresh tmpfs over /tmp, / read-only) stands in the way.
  const inTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aha-test-out-'));
  const inRepo = outsideDir('out-');
  fs.chmodSync(inTmp, 0o777);
  fs.chmodSync(inRepo, 0o777);
  const hostTargets = [path.join(inTmp, 'pwned'), path.join(inRepo, 'pwned'), path.join(fixtures, 'aha-pwned')];
  // Paths that exist inside too (the sandbox's own throwaway tmpfs): the write may succeed there but must not reach the host.
  const scratch = ['/tmp/aha-pwned', '/var/tmp/aha-pwned', '/dev/shm/aha-pwned', '../aha-pwned'];
  const hostScratch = ['/tmp/aha-pwned', '/var/tmp/aha-pwned', '/dev/shm/aha-pwned', path.join(os.tmpdir(), 'aha-pwned')];
  try {
    const attack = py('def write(p):\n    with open(p, "w") as f:\n        f.write("pwned")\n    return True');
    // The attack wins if a host path can be written.
    const r = await grade(attack, { tests: hostTargets.map((t) => `assert write(${JSON.stringify(t)})`) });
    assert.equal(r.score, 0, r.explanation);
    assert.match(r.explanation, /No such file|Read-only file system|Permission denied/);
    const jsAttack = js(`const fs = require('fs');\nfor (const t of ${JSON.stringify(hostTargets)}) { try { fs.writeFileSync(t, 'pwned'); console.log('WROTE ' + t); } catch {} }`);
    const jr = await grade(jsAttack, { cases: [{ input: '', output: '' }] });
    assert.equal(jr.score, 1, jr.explanation); // it ran and printed nothing: every write failed
    const s = await grade(attack, { tests: scratch.map((t) => `write(${JSON.stringify(t)})`) });
    assert.equal(s.score, 1, s.explanation); // writes to its own scratch space are allowed...
    for (const t of [...hostTargets, ...hostScratch]) assert.equal(fs.existsSync(t), false, t); // ...and reach nothing outside
    assert.deepEqual(fs.readdirSync(inTmp), []);
    assert.deepEqual(fs.readdirSync(inRepo), []);
    // Control: writing inside its own directory works.
    assert.equal((await grade(attack, { tests: ['assert write("mine.txt") and open("mine.txt").read() == "pwned"'] })).score, 1);
  } finally {
    fs.rmSync(inTmp, { recursive: true, force: true });
    fs.rmSync(inRepo, { recursive: true, force: true });
  }
});

test('the deadline holds when the grading process itself is killed mid-run (timeout as the namespace PID 1)', { skip }, async () => {
  const before = new Set(workDirs());
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(fixtures, 'orphan.mts')], { cwd: path.resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('started')) resolve(); }));
  assert.ok(sandboxProcesses().length > 0, 'the sandboxed program is running');
  child.kill('SIGKILL');
  // Nothing is left to enforce the wall limit but the in-namespace watchdog: 1 s + 2 s grace.
  const t0 = Date.now();
  while (sandboxProcesses().length > 0 && Date.now() - t0 < 8000) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(sandboxProcesses(), []);
  assert.ok(Date.now() - t0 < 6000, `took ${Date.now() - t0} ms`);
  // Known gap: the work directory of a run whose parent died stays behind; clean it up here.
  for (const d of workDirs()) if (!before.has(d)) fs.rmSync(path.join(os.tmpdir(), d), { recursive: true, force: true });
});

test('capped output: a flood is cut at the limit and fails the test', { skip }, async () => {
  const r = await runSandboxed({ runtime: 'python', files: { 'main.py': 'while True:\n    print("x" * 1000)' }, main: 'main.py', limits: { maxOutputBytes: 10000, wallMs: 5000 } });
  assert.equal(r.outputTruncated, true);
  assert.ok(r.stdout.length <= 10000);
  assert.ok(r.wallMs < 4000);
  assert.equal((await grade(py('print("y" * 10**7)'), { cases: [{ input: '', output: 'y' }] })).score, 0);
});

test('the pool runs at most `size` sandboxes at once', { skip }, async () => {
  const p = new SandboxPool(2);
  const t0 = Date.now();
  const runs = await Promise.all(Array.from({ length: 4 }, () => p.run({ runtime: 'python', files: { 'main.py': 'import time\ntime.sleep(0.5)' }, main: 'main.py' })));
  const took = Date.now() - t0;
  assert.ok(runs.every((r) => r.exitCode === 0));
  assert.ok(took >= 1000, `4 runs of 0.5 s on 2 slots took ${took} ms`);
});

after(() => {
  if (outsideBase !== fixtures) fs.rmSync(outsideBase, { recursive: true, force: true });
});
