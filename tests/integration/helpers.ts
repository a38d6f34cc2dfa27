// What the integration tests share: the `aha` command run as a user runs it (and killed at a
// checkpoint), its --json lines, a JSONL dataset writer, and a reader for the safetensors files
// it writes (gradients, adapters).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const root = resolve(import.meta.dirname, '../..');

/**
 * The app's data folder for the commands the tests run (the runs `aha train` records): one of
 * their own, never the user's, unless a test gives --data-dir.
 */
export const testEnv = { ...process.env, AHA_DATA_DIR: mkdtempSync(join(tmpdir(), 'aha-test-data-')) };

/** Runs `aha ARGS…` with this Node; never throws. */
export function aha(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin/aha.mjs'), ...args], { cwd: root, encoding: 'utf8', maxBuffer: 1 << 28, env: testEnv });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** One `--json` line of `aha train` (fields by event). */
export interface Line {
  event: string;
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  path?: string;
  last_loss?: number;
  model?: string;
}

export const lines = (stdout: string) =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Line);
export const steps = (stdout: string) => lines(stdout).filter((l) => l.event === 'step');

/** rows as a JSONL file (strings written as they are: broken rows for the error tests). */
export function dataset(rows: unknown[]): string {
  const file = join(mkdtempSync(join(tmpdir(), 'aha-data-')), 'data.jsonl');
  writeFileSync(file, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return file;
}

/** Runs `aha ARGS…` (with --json) and SIGKILLs it once it reports the checkpoint of `step`; its stdout's whole lines and how it ended. */
export async function killAtCheckpoint(args: string[], step: number): Promise<{ stdout: string; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, [join(root, 'bin/aha.mjs'), ...args], { cwd: root, env: testEnv });
  let got = '';
  await new Promise<void>((res) => {
    child.stdout.on('data', (d: Buffer) => {
      got += d.toString();
      if (lines(got.slice(0, got.lastIndexOf('\n') + 1)).some((l) => l.event === 'checkpoint' && l.step === step)) child.kill('SIGKILL');
    });
    child.on('exit', () => res());
  });
  return { stdout: got.slice(0, got.lastIndexOf('\n') + 1), signal: child.signalCode };
}

export interface SafetensorsTensor {
  dtype: string;
  shape: number[];
  values: number[];
}

/** Every F32/F64 tensor of a safetensors file as numbers, and its metadata. */
export function readSafetensors(path: string): { tensors: Record<string, SafetensorsTensor>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensors: Record<string, SafetensorsTensor> = {};
  let metadata: Record<string, string> = {};
  for (const [k, e] of Object.entries(header)) {
    if (k === '__metadata__') {
      metadata = e as unknown as Record<string, string>;
      continue;
    }
    const data = buf.subarray(8 + n + e.data_offsets[0], 8 + n + e.data_offsets[1]);
    const size = e.dtype === 'F64' ? 8 : 4;
    const values: number[] = [];
    for (let i = 0; i < data.length; i += size) values.push(size === 8 ? data.readDoubleLE(i) : data.readFloatLE(i));
    tensors[k] = { dtype: e.dtype, shape: e.shape, values };
  }
  return { tensors, metadata };
}
