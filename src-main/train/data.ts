// What `aha train sft|grpo --dataset FILE|ID` trains on: a JSONL file, or a dataset of the app's
// database named by id or name, written out as the JSONL the loops read (so that a checkpoint's
// data hash also tells when a stored dataset changed before a resume). A dataset's eval split is
// left out: it is kept for evaluation.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Database } from '../db/index.ts';
import { getDataset, getDatasetByName, iterateItems, listDatasets, type Dataset, type DatasetItem } from '../db/datasets.ts';

export interface TrainingData {
  /** The file's absolute path, or `dataset N "name"`. */
  label: string;
  /** JSONL, one example (SFT) or prompt (GRPO) a line. */
  text: string;
  /** The stored dataset, when the data is one. */
  dataset?: Dataset;
  /** What was left out of a stored dataset, for the user. */
  note?: string;
}

/** A GRPO prompt line: the grader's reference is the item's tests for code, else its answer. */
function grpoLine(item: DatasetItem): Record<string, unknown> {
  const reference = item.tests ?? item.reference;
  return { prompt: item.prompt, ...(reference !== null ? { reference } : {}), ...(item.systemPrompt ? { system_prompt: item.systemPrompt } : {}) };
}

/** An SFT line: the prompt as the user's message, the worked solution as the answer to learn. */
function sftLine(item: DatasetItem): Record<string, unknown> | undefined {
  if (!item.solution?.trim()) return undefined;
  return {
    messages: [
      ...(item.systemPrompt ? [{ role: 'system', content: item.systemPrompt }] : []),
      { role: 'user', content: item.prompt },
      { role: 'assistant', content: item.solution },
    ],
  };
}

function findDataset(db: Database, spec: string): Dataset | undefined {
  return (/^\d+$/.test(spec) ? getDataset(db, Number(spec)) : undefined) ?? getDatasetByName(db, spec);
}

/**
 * The data `spec` names: a file when one exists at that path, else a stored dataset by id, else by
 * name. `dbFile` is only for messages.
 */
export function resolveTrainingData(db: Database, dbFile: string, spec: string, kind: 'sft' | 'grpo'): TrainingData {
  if (existsSync(spec)) {
    if (statSync(spec).isDirectory()) throw new Error(`${spec} is a folder, not a data file`);
    return { label: resolve(spec), text: readFileSync(spec, 'utf8') };
  }
  const dataset = findDataset(db, spec);
  if (!dataset) {
    const known = listDatasets(db);
    const list = known.length
      ? `its datasets: ${known.slice(0, 8).map((d) => `${d.id} "${d.name}"`).join(', ')}${known.length > 8 ? ', …' : ''}`
      : 'it holds no datasets yet; import or generate one in the app';
    throw new Error(`--dataset ${spec}: no such file, and no dataset with that id or name in ${dbFile} (${list})`);
  }
  const label = `dataset ${dataset.id} "${dataset.name}"`;
  const lines: string[] = [];
  let evalItems = 0;
  let noSolution = 0;
  for (const item of iterateItems(db, dataset.id)) {
    if (item.split === 'eval') {
      evalItems++;
      continue;
    }
    const line = kind === 'grpo' ? grpoLine(item) : sftLine(item);
    if (line) lines.push(JSON.stringify(line));
    else noSolution++;
  }
  const left = [
    ...(evalItems ? [`${evalItems} eval item${evalItems > 1 ? 's' : ''}`] : []),
    ...(noSolution ? [`${noSolution} item${noSolution > 1 ? 's' : ''} without a worked solution to learn`] : []),
  ];
  if (!lines.length) throw new Error(`${label} has no items to train on${left.length ? ` (left out: ${left.join(', ')})` : ''}`);
  return { label, text: lines.join('\n') + '\n', dataset, note: `${label}: ${lines.length} ${kind === 'grpo' ? 'prompt' : 'example'}${lines.length > 1 ? 's' : ''}${left.length ? ` (left out: ${left.join(', ')})` : ''}` };
}
