/**
 * A sandbox for untrusted code (the code grader's programs), built from util-linux and coreutils tools; Linux only.
 *
 *   unshare [--user --map-root-user]                  userns mode only (an ordinary user): an unprivileged user namespace
 *           --net --pid --fork --mount-proc --mount   new network namespace (only a downed loopback: no network at all),
 *                                                     new PID namespace (when its PID 1 exits or is killed, the kernel
 *                                                     kills everything the program started), private mounts
 *   sh (namespace root)                               fresh size-capped tmpfs over /tmp, /var/tmp, /dev/shm, /root, /home,
 *                                                     /run and the user's home (hides every user's files and sockets);
 *                                                     the work directory bind-mounted at /tmp/work; / and every other
 *                                                     mount remounted read-only
 *   timeout --signal=KILL (PID 1, namespace root)     a deadline inside the namespace that holds even if the parent dies
 *   setpriv                                           root mode: a fresh unprivileged uid per run (--reuid/--regid,
 *                                                     --clear-groups): root's files (~/.ssh...) are unreadable and
 *                                                     RLIMIT_NPROC, counted per uid, applies to this run only.
 *                                                     userns mode: the uid stays the user's; securebits noroot locked.
 *                                                     Both: --no-new-privs, empty bounding and inheritable sets (no
 *                                                     capability survives the exec, no setuid escalation)
 *   prlimit --as --cpu --fsize --nproc --nofile --core memory, CPU seconds, file size, processes, open files, no cores
 *
 * The parent adds: a scrubbed environment (PATH, HOME=/tmp/work, LANG only), a wall-clock limit that SIGKILLs the process
 * group (and in root mode every process of the run's uid), stdout/stderr capped (exceeding the cap kills the run), and
 * the temporary work directory deleted afterwards. A run returns only once no process of it is left. When a tool is
 * missing or the probe run fails, runs fail closed with SandboxUnavailableError: nothing ever runs unsandboxed.
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

/**
 * Runs inside the namespaces as (namespace) root: $1 work dir, $2 tmpfs size, $3 one more directory to hide (the
 * invoking user's home when it is outside /home and /root), $4 a directory to keep visible, read-only, when it lies in
 * a hidden one (the runtime's own folder: Node from an app or checkout under /tmp or a home); then the command. No
 * untrusted text is interpolated.
 * Every other mount is remounted read-only where the kernel allows (failures there are ignored: in root mode the
 * fresh uid cannot write root's files anyway).
 */
const SETUP = `set -e
W="$1"; SIZE="$2"; HIDE="$3"; KEEP="$4"; shift 4
mount --make-rprivate /
mount -t tmpfs -o "size=$SIZE,mode=1777,nosuid,nodev" tmpfs /dev/shm
mkdir /dev/shm/work
mount --bind "$W" /dev/shm/work
if [ -n "$KEEP" ]; then mkdir /dev/shm/keep; mount --bind "$KEEP" /dev/shm/keep; fi
for d in /tmp /var/tmp /root /home /run "$HIDE"; do
  if [ -n "$d" ] && [ -d "$d" ]; then mount -t tmpfs -o "size=$SIZE,mode=1777,nosuid,nodev" tmpfs "$d"; fi
done
mkdir /tmp/work
mount --move /dev/shm/work /tmp/work
rmdir /dev/shm/work
if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP"
  mount --move /dev/shm/keep "$KEEP"
  rmdir /dev/shm/keep
  mount -o remount,bind,ro "$KEEP"
fi
mount -o remount,bind,ro /
while read -r _ m _; do
  case "$m" in /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/tmp|/tmp/*|/var/tmp|/root|/home|/run|"$HIDE") continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done < /proc/self/mounts
cd /tmp/work
exec "$@"
`;

/** The folders SETUP covers with a fresh tmpfs (besides the invoking user's home). */
const HIDDEN = ['/tmp', '/var/tmp', '/root', '/home', '/run'];

interface Tools { unshare: string; setpriv: string; prlimit: string; sh: string; mount: string; timeout: string }

/**
 * 'root': the process is root (a container, a grading service): namespaces directly, the program under a fresh uid.
 * 'userns': an ordinary user (the desktop app): an unprivileged user namespace maps the user to root inside, the same
 * mounts hide the home directories, and every capability is dropped before the program runs (it keeps the user's uid:
 * files the user can read outside the hidden directories stay readable, read-only).
 */
export type SandboxMode = 'root' | 'userns';

let support: { tools: Tools; mode: SandboxMode } | { error: string } | undefined;

function probeTools(): { tools: Tools; mode: SandboxMode } | { error: string } {
  if (process.platform !== 'linux') return { error: `needs Linux namespaces (this is ${process.platform})` };
  const tools: Partial<Tools> = {};
  for (const t of ['unshare', 'setpriv', 'prlimit', 'sh', 'mount', 'timeout'] as const) {
    const p = findTool(t);
    if (!p) return { error: `"${t}" (util-linux / coreutils) not found in ${SYSTEM_DIRS.join(':')}` };
    tools[t] = p;
  }
  return { tools: tools as Tools, mode: process.getuid?.() === 0 ? 'root' : 'userns' };
}

/** Whether the sandbox can run here, and how; the first call also runs a probe program through every layer. */
export function sandboxSupport(): { ok: true; mode: SandboxMode } | { ok: false; reason: string } {
  if (!support) {
    const t = probeTools();
    if ('error' in t) support = t;
    else {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aha-sbx-probe-'));
      try {
        support = probeRun(t, dir);
      } catch (e) {
        support = { error: `probe failed in ${t.mode} mode: ${(e as Error).message}` };
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  return 'error' in support ? { ok: false, reason: support.error } : { ok: true, mode: support.mode };
}

function probeRun(t: { tools: Tools; mode: SandboxMode }, dir: string): { tools: Tools; mode: SandboxMode } | { error: string } {
  const uid = freshUid();
  if (t.mode === 'root') fs.chownSync(dir, uid, uid);
  // No network interface but lo, and no capability left.
  const check = ['/bin/sh', '-c', 'test "$(grep -c : /proc/net/dev)" = 1 && grep -q "^CapEff:[[:space:]]*0*$" /proc/self/status || exit 9; echo ok'];
  const argv = sandboxArgv(t.tools, t.mode, dir, uid, { ...SANDBOX_DEFAULTS, fileBytes: 2 ** 20 }, 0, check);
  const r = spawnSync(t.tools.unshare, argv, { env: scrubbedEnv(), encoding: 'utf8', timeout: 10000 });
  return r.status === 0 && r.stdout.trim() === 'ok' ? t : { error: `probe failed in ${t.mode} mode (status ${r.status}): ${(r.stderr || r.error?.message || '').trim().slice(0, 500)}` };
}

/** Processes of this real uid now (for the userns mode's RLIMIT_NPROC, which counts the user's every process). */
function processesOfUid(uid: number): number {
  let n = 0;
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]) === uid) n++;
    } catch { /* gone */ }
  }
  return n;
}

/** The full unshare argument list: namespaces, setup, watchdog, privilege drop, limits, program. */
function sandboxArgv(t: Tools, mode: SandboxMode, dir: string, uid: number, l: Required<SandboxLimits>, extraAs: number, program: string[]): string[] {
  const ns = mode === 'root' ? [] : ['--user', '--map-root-user'];
  const home = os.homedir();
  const hide = home && !/^\/(?:home|root)(?:\/|$)/.test(home) && home !== '/' ? home : '';
  // `timeout` (namespace root, PID 1, out of the program's reach) is a second deadline that holds even if this process
  // dies: when it fires or its child exits, PID 1 exits and the kernel kills the whole namespace.
  const watchdog = [t.timeout, '--signal=KILL', `${Math.ceil(l.wallMs / 1000) + 2}s`];
  const drop = mode === 'root'
    ? [t.setpriv, `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--no-new-privs', '--bounding-set=-all', '--inh-caps=-all']
    : [t.setpriv, '--no-new-privs', '--bounding-set=-all', '--inh-caps=-all', '--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked'];
  const nproc = mode === 'root' ? l.maxProcesses : processesOfUid(process.getuid?.() ?? -1) + l.maxProcesses;
  const limits = [t.prlimit, `--as=${l.memoryBytes + extraAs}`, `--cpu=${l.cpuSeconds}:${l.cpuSeconds + 1}`, `--fsize=${l.fileBytes}`, `--nproc=${nproc}`, '--nofile=256', '--core=0', '--'];
  // The runtime must stay reachable when it lives in a folder the sandbox hides (only its own bin folder is kept).
  const runtimeDir = path.dirname(fs.realpathSync(program[0]));
  const keep = [...HIDDEN, ...(hide ? [hide] : [])].some((d) => runtimeDir === d || runtimeDir.startsWith(d + '/')) ? runtimeDir : '';
  return [...ns, '--net', '--pid', '--fork', '--mount-proc', '--mount', '--kill-child', '--', t.sh, '-c', SETUP, 'sh', dir, String(l.fileBytes), hide, keep, ...watchdog, ...drop, ...limits, ...program];
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
  const { tools, mode } = support as { tools: Tools; mode: SandboxMode };
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
    if (mode === 'root') fs.chownSync(dir, uid, uid);
    const argv = sandboxArgv(tools, mode, dir, uid, l, rt.extraAs, rt.argv);
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
        if (mode === 'root') killUid(uid);
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
    // Root mode: every process of the fresh uid. Userns mode: the namespace is gone once unshare has exited (its PID 1
    // exiting makes the kernel kill and reap the rest before the exit completes).
    if (mode === 'root') await reapUid(uid);
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
