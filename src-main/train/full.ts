// Full training (`aha train sft --full`): every parameter of a small dense model (embeddings,
// projections and biases, norms, lm head; f32 master weights in the engine) trained by the SFT
// loop of sft-run.ts, from a model or from a fresh one made from an HF config.json. Each
// checkpoint, and OUT at the end, is a model folder the engine and transformers load:
// config.json, model.safetensors and the tokenizer's files (beside the optimizer state).
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readGguf } from '../formats/gguf.ts';
import { native, type NativeFullTrainer } from '../engine/native.ts';
import { hfTokenizerFromGguf } from '../tokenizer/tokenizer.ts';
import type { SftRun } from './sft-run.ts';

/** The model's files in a checkpoint, which (with the tokenizer's) become the run's output. */
export const MODEL_FILES = ['config.json', 'model.safetensors'];

/** The files of an HF folder that make up its tokenizer (tokenizer.json is required). */
const HF_TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'chat_template.jinja'];

/** The tokenizer's files, by name: those of an HF folder, or made from a GGUF's embedded vocabulary. */
export function tokenizerFiles(source: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  if (!existsSync(source)) throw new Error(`${source}: no such file or folder`);
  if (statSync(source).isDirectory()) {
    if (!existsSync(join(source, 'tokenizer.json'))) throw new Error(`${source}: no tokenizer.json (give the tokenizer's folder with --tokenizer DIR)`);
    for (const f of HF_TOKENIZER_FILES) if (existsSync(join(source, f))) files.set(f, readFileSync(join(source, f)));
  } else {
    const { json, config } = hfTokenizerFromGguf(readGguf(source));
    files.set('tokenizer.json', Buffer.from(JSON.stringify(json)));
    files.set('tokenizer_config.json', Buffer.from(JSON.stringify(config, null, 2) + '\n'));
  }
  return files;
}

export interface FullStart {
  /** The model to start from (GGUF file or HF folder), or an HF config.json for a fresh model (seeded by the run's seed). */
  model?: string;
  config?: string;
  /** The tokenizer's files, written into every checkpoint. */
  tokenizer: Map<string, Buffer>;
  /** Tokens the tokenizer has: the model's vocabulary must hold them all. */
  tokenizerVocab: number;
  threads?: number;
}

/** runSft's trainer for full training: from the model or config of `start`, or from a checkpoint. */
export function fullTrainer(start: FullStart): SftRun['createTrainer'] {
  return async (config, resumeFrom) => {
    const common = { threads: start.threads, weightDecay: config.weightDecay, maxGradNorm: config.maxGradNorm };
    const t: NativeFullTrainer = await native().createFullTrainer(
      resumeFrom ? { resume: resumeFrom, ...common } : { model: start.model, config: start.config, seed: config.seed, ...common },
    );
    if (start.tokenizerVocab > t.vocabSize)
      throw new Error(`the tokenizer has ${start.tokenizerVocab} tokens, more than the model's vocab_size ${t.vocabSize}`);
    return {
      initialStep: t.initialStep,
      step: (opts) => t.step(opts),
      save: async (dir) => {
        await t.save(dir);
        for (const [name, bytes] of start.tokenizer) writeFileSync(join(dir, name), bytes);
      },
    };
  };
}
