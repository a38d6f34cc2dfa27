// Which process trains a run, and whether it still lives. A trainer killed outright (SIGKILL, a
// crash, the machine's power) cannot write how its run ended, so the run's row names its process
// (db/runs.ts): the pid, the host, and on Linux the process's start time. A reader that finds a
// run running or paused whose process is gone shows it interrupted.
//
// A pid alone is not a process: pids are reused. On Linux the start time (field 22 of
// /proc/PID/stat, clock ticks since boot) together with the boot's id names one process for good,
// so a reused pid is never taken for the trainer. Elsewhere only the pid's existence is checked.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

export interface RunOwner {
  pid: number;
  host: string;
  /** `BOOT_ID:STARTTIME` on Linux; null where the platform does not tell. */
  start: string | null;
}

let bootId: string | null | undefined;

function linuxBootId(): string | null {
  if (bootId === undefined) {
    try {
      bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      bootId = null;
    }
  }
  return bootId;
}

/** The start identity of process `pid` (Linux), or null when it cannot be read (no such process, another platform). */
export function processStart(pid: number): string | null {
  if (process.platform !== 'linux') return null;
  const boot = linuxBootId();
  if (!boot) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so fields count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const starttime = fields[19]; // field 22 of the whole line
    return starttime && /^\d+$/.test(starttime) ? `${boot}:${starttime}` : null;
  } catch {
    return null;
  }
}

/** This process, as a run's owner. */
export function currentOwner(): RunOwner {
  return { pid: process.pid, host: hostname(), start: processStart(process.pid) };
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the owner's process still runs: false when it is gone (or its pid now belongs to a
 * process started later), null when this machine cannot tell (the run was trained on another host).
 */
export function ownerAlive(owner: RunOwner): boolean | null {
  if (owner.host !== hostname()) return null;
  if (owner.pid === process.pid) return owner.start === null || owner.start === processStart(process.pid);
  if (!pidExists(owner.pid)) return false;
  if (owner.start === null) return true;
  const now = processStart(owner.pid);
  // Unreadable (gone since, or /proc hides other users' processes): the pid's existence decides.
  if (now === null) return pidExists(owner.pid);
  // Another process under the same pid?
  return now === owner.start;
}
