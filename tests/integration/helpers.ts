// What the integration tests share: the `aha` command run as a user runs it, and a reader for the
// safetensors files it writes (gradients, adapters).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
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
