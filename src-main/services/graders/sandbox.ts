/**
 * A sandbox for untrusted code (the code grader's programs), built from util-linux tools; Linux only, run as root.
 *
 *   unshare --net --pid --fork --mount-proc --mount   new network namespace (only a downed loopback: no network at all),
 *                                                     new PID namespace (the program is PID 1: when it exits or is killed,
 *                                                     the kernel kills everything it started), private mounts
 *   sh (as root inside the namespaces)                fresh size-capped tmpfs over /tmp, /var/tmp, /dev/shm, /root, /home,
 *                                                     /run (hides every other user's files and sockets); the work
 *                                                     directory bind-mounted at /tmp/work; / remounted read-only
 *   setpriv --reuid U --regid U --clear-groups        a fresh unprivileged uid per run (no capabilities, bounding set
 *           --no-new-privs --bounding-set=-all         emptied, no setuid escalation): root's files (~/.ssh...) are
 *                                                     unreadable, and RLIMIT_NPROC, counted per uid, applies to this run only
 *   prlimit --as --cpu --fsize --nproc --nofile --core memory, CPU seconds, file size, process count, open files, no cores
 *   timeout --signal=KILL (PID 1, root)               a deadline inside the namespace that holds even if the parent dies
 *
 * The parent adds: a scrubbed environment (PATH, HOME=/tmp/work, LANG only), a wall-clock limit that SIGKILLs the process
 * group and every process of the run's uid, stdout/stderr capped (exceeding the cap kills the run), and the temporary work
 * directory deleted afterwards. When a tool is missing or the process is not root, runs fail closed with
 * SandboxUnavailableError: nothing ever runs unsandboxed.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class SandboxUnavailableError extends Error {
  constructor(message: string) {
    super(`code sandbox unavailable: ${message}`);
    this.name = 'SandboxUnavailableError';
  }
}

export interface SandboxLimits {
  /** Wall-clock limit. Default 5000 ms. */
  wallMs?: number;
  /** CPU seconds per process (RLIMIT_CPU). Default 5. */
  cpuSeconds?: number;
  /** Address-space limit for the program (RLIMIT_AS); the node runtime gets 768 MiB more for V8's reservations. Default 256 MiB. */
  memoryBytes?: number;
  /** Largest file the program may write (RLIMIT_FSIZE), and the size of each tmpfs. Default 16 MiB. */
  fileBytes?: number;
  /** Processes of the run's uid (RLIMIT_NPROC). Default 32. */
  maxProcesses?: number;
  /** Bytes kept of stdout and of stderr each; more kills the run. Default 64 KiB. */
  maxOutputBytes?: number;
}

export type Runtime = 'python' | 'javascript';

export interface SandboxRequest {
  runtime: Runtime;
  /** Files written into the work directory (names without slashes). */
  files: Record<string, string>;
  /** The file to run. */
  main: string;
  stdin?: string;
  limits?: SandboxLimits;
}

export interface SandboxResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  outputTruncated: boolean;
  wallMs: number;
}

export const SANDBOX_DEFAULTS: Required<SandboxLimits> = {
  wallMs: 5000, cpuSeconds: 5, memoryBytes: 256 * 2 ** 20, fileBytes: 16 * 2 ** 20, maxProcesses: 32, maxOutputBytes: 64 * 1024,
};

const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin'];

function findTool(name: string): string | null {
  for (const d of SYSTEM_DIRS) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

/** Runs inside the namespaces as root: $1 work dir, $2 tmpfs size; then the command. No untrusted text is interpolated. */
const SETUP = `set -e
W="$1"; SIZE="$2"; shift 2
mount --make-rprivate /
mount -t tmpfs -o "size=$SIZE,mode=1777,nosuid,nodev" tmpfs /dev/shm
mkdir /dev/shm/work
mount --bind "$W" /dev/shm/work
for d in /tmp /var/tmp /root /home /run; do
  if [ -d "$d" ]; then mount -t tmpfs -o "size=$SIZE,mode=1777,nosuid,nodev" tmpfs "$d"; fi
done
mkdir /tmp/work
mount --move /dev/shm/work /tmp/work
rmdir /dev/shm/work
mount -o remount,bind,ro /
cd /tmp/work
exec "$@"
`;

interface Tools { unshare: string; setpriv: string; prlimit: string; sh: string; mount: string; timeout: string }

let support: { tools: Tools } | { error: string } | undefined;

function probeTools(): { tools: Tools } | { error: string } {
  if (process.platform !== 'linux') return { error: `needs Linux namespaces (this is ${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { error: 'needs root (to create namespaces, mount tmpfs and drop to a fresh uid); run the grader service as root in a container' };
  }
  const tools: Partial<Tools> = {};
  for (const t of ['unshare', 'setpriv', 'prlimit', 'sh', 'mount', 'timeout'] as const) {
    const p = findTool(t);
    if (!p) return { error: `"${t}" (util-linux) not found in ${SYSTEM_DIRS.join(':')}` };
    tools[t] = p;
  }
  return { tools: tools as Tools };
}

/** Whether the sandbox can run here; the first call also runs a probe program through every layer. */
export function sandboxSupport(): { ok: true } | { ok: false; reason: string } {
  if (!support) {
    const t = probeTools();
    if ('error' in t) support = t;
    else {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aha-sbx-probe-'));
      try {
        const uid = freshUid();
        fs.chownSync(dir, uid, uid);
        const r = spawnSync(t.tools.unshare, [...namespaceArgs(), t.tools.sh, '-c', SETUP, 'sh', dir, '1m', ...dropArgs(t.tools, uid, SANDBOX_DEFAULTS, 0), '/bin/sh', '-c', 'test "$(id -u)" = "$1" && test "$(grep -c : /proc/net/dev)" = 1 || exit 9; echo ok', 'sh', String(uid)],
          { env: scrubbedEnv(), encoding: 'utf8', timeout: 10000 });
        support = r.status === 0 && r.stdout.trim() === 'ok' ? t : { error: `probe failed (status ${r.status}): ${(r.stderr || r.error?.message || '').trim().slice(0, 500)}` };
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  return 'error' in support ? { ok: false, reason: support.error } : { ok: true };
}

function namespaceArgs(): string[] {
  return ['--net', '--pid', '--fork', '--mount-proc', '--mount', '--kill-child', '--'];
}

function dropArgs(t: Tools, uid: number, l: Required<SandboxLimits>, extraAs: number): string[] {
  return [
    t.setpriv, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--no-new-privs', '--bounding-set=-all', '--inh-caps=-all',
    t.prlimit, `--as=${l.memoryBytes + extraAs}`, `--cpu=${l.cpuSeconds}:${l.cpuSeconds + 1}`, `--fsize=${l.fileBytes}`,
    `--nproc=${l.maxProcesses}`, '--nofile=256', '--core=0', '--',
  ];
}

let uidCounter = 0;
/** A uid no other run uses (random in a high range, plus a counter): limits and kills by uid touch this run only. */
function freshUid(): number {
  uidCounter = (uidCounter + 1) % 1000;
  return 2_000_000 + randomInt(0, 1_000_000) * 1000 + uidCounter;
}

function scrubbedEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/tmp/work', TMPDIR: '/tmp', LANG: 'C.UTF-8', ...extra };
}

/** SIGKILL every process whose real uid is `uid` (the run's own fresh uid). */
export function killUid(uid: number): number {
  let killed = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = fs.readFileSync(`/proc/${name}/status`, 'utf8');
      const m = /^Uid:\s+(\d+)/m.exec(status);
      if (m && Number(m[1]) === uid) {
        process.kill(Number(name), 'SIGKILL');
        killed++;
      }
    } catch { /* gone */ }
  }
  return killed;
}

export interface RuntimePaths { python?: string; node?: string }

function runtimeCommand(runtime: Runtime, main: string, l: Required<SandboxLimits>, paths: RuntimePaths): { argv: string[]; extraAs: number; env: Record<string, string> } {
  if (runtime === 'python') {
    const py = paths.python ?? findTool('python3');
    if (!py) throw new SandboxUnavailableError('python3 not found in /usr/bin or /bin');
    return { argv: [py, '-I', '-B', main], extraAs: 0, env: { PYTHONHASHSEED: '0' } };
  }
  const node = paths.node ?? process.execPath;
  const env: Record<string, string> = process.versions.electron ? { ELECTRON_RUN_AS_NODE: '1' } : {};
  const heapMb = Math.max(16, Math.floor(l.memoryBytes / 2 ** 20));
  return { argv: [node, `--max-old-space-size=${heapMb}`, '--disallow-code-generation-from-strings', main], extraAs: 768 * 2 ** 20, env };
}

/** Run one program in the sandbox. Throws SandboxUnavailableError when the sandbox cannot be built here. */
export async function runSandboxed(req: SandboxRequest, paths: RuntimePaths = {}): Promise<SandboxResult> {
  const s = sandboxSupport();
  if (!s.ok) throw new SandboxUnavailableError(s.reason);
  const tools = (support as { tools: Tools }).tools;
  const l = { ...SANDBOX_DEFAULTS, ...req.limits };
  const rt = runtimeCommand(req.runtime, req.main, l, paths);
  for (const name of [...Object.keys(req.files), req.main]) {
    if (!/^[\w.-]+$/.test(name) || name.startsWith('.')) throw new Error(`bad sandbox file name ${JSON.stringify(name)}`);
  }
  const uid = freshUid();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aha-sbx-'));
  const started = Date.now();
  try {
    fs.chmodSync(dir, 0o700);
    for (const [name, text] of Object.entries(req.files)) fs.writeFileSync(path.join(dir, name), text, { mode: 0o644 });
    fs.chownSync(dir, uid, uid);
    // `timeout` (root, PID 1 of the namespace, out of the program's reach) is a second deadline that holds even if this
    // process dies: when it fires or its child exits, PID 1 exits and the kernel kills the whole namespace.
    const watchdog = [tools.timeout, '--signal=KILL', `${Math.ceil(l.wallMs / 1000) + 2}s`];
    const argv = [...namespaceArgs(), tools.sh, '-c', SETUP, 'sh', dir, String(l.fileBytes), ...watchdog, ...dropArgs(tools, uid, l, rt.extraAs), ...rt.argv];
    return await new Promise<SandboxResult>((resolve) => {
      const child = spawn(tools.unshare, argv, { env: scrubbedEnv(rt.env), detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let outLen = 0;
      let errLen = 0;
      let truncated = false;
      let timedOut = false;
      const killAll = () => {
        try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
        killUid(uid);
      };
      const take = (chunks: Buffer[], len: number, d: Buffer): number => {
        const room = l.maxOutputBytes - len;
        if (d.length > room) {
          if (room > 0) chunks.push(d.subarray(0, room));
          if (!truncated) { truncated = true; killAll(); }
          return l.maxOutputBytes;
        }
        chunks.push(d);
        return len + d.length;
      };
      child.stdout.on('data', (d: Buffer) => { outLen = take(out, outLen, d); });
      child.stderr.on('data', (d: Buffer) => { errLen = take(err, errLen, d); });
      child.stdin.on('error', () => { /* the program need not read its input */ });
      child.stdin.end(req.stdin ?? '');
      const timer = setTimeout(() => { timedOut = true; killAll(); }, l.wallMs);
      child.on('error', (e) => {
        clearTimeout(timer);
        killAll();
        resolve({ exitCode: null, signal: null, stdout: '', stderr: `spawn failed: ${e.message}`, timedOut, outputTruncated: truncated, wallMs: Date.now() - started });
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        killAll(); // stragglers (none expected: the PID namespace dies with its first process)
        resolve({
          exitCode: code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'),
          timedOut, outputTruncated: truncated, wallMs: Date.now() - started,
        });
      });
    });
  } finally {
    await reapUid(uid);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Kill the run's processes until none is left (SIGKILL is asynchronous; dying processes linger briefly in /proc). */
async function reapUid(uid: number): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (killUid(uid) === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`sandbox processes of uid ${uid} survived 5 s of SIGKILL`);
}

/** Runs sandboxes with at most `size` at a time (default: the machine's cores). */
export class SandboxPool {
  private active = 0;
  private readonly queue: Array<() => void> = [];
  constructor(readonly size = Math.max(1, os.availableParallelism()), private readonly paths: RuntimePaths = {}) {}

  async run(req: SandboxRequest): Promise<SandboxResult> {
    if (this.active >= this.size) await new Promise<void>((r) => this.queue.push(r));
    this.active++;
    try {
      return await runSandboxed(req, this.paths);
    } finally {
      this.active--;
      this.queue.shift()?.();
    }
  }
}

let shared: SandboxPool | undefined;
export function sharedSandboxPool(): SandboxPool {
  shared ??= new SandboxPool();
  return shared;
}
