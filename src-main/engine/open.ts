// Opening a model for use: the native weights, and its tokenizer and chat template from
// the same source (HF folder files, or the GGUF's embedded vocabulary).
import { statSync } from 'node:fs';
import { readGguf } from '../formats/gguf.ts';
import { Tokenizer } from '../tokenizer/tokenizer.ts';
import { ChatTemplate } from '../chat/template.ts';
import { native, type LoadOptions, type LoadProgress, type NativeModel } from './native.ts';

export interface OpenModel {
  path: string;
  model: NativeModel;
  tokenizer: Tokenizer;
  template: ChatTemplate;
  /** Set when the model's own template failed to parse and the fallback is used. */
  templateError?: string;
}

export function loadTokenizer(path: string): Tokenizer {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new Error(`${path}: no such file or folder`);
  }
  return isDir ? Tokenizer.fromHfFolder(path) : Tokenizer.fromGguf(readGguf(path));
}

export function chatTemplateFor(tokenizer: Tokenizer): { template: ChatTemplate; error?: string } {
  if (!tokenizer.chatTemplate) return { template: ChatTemplate.fallback(), error: 'the model has no chat template' };
  try {
    return { template: new ChatTemplate(tokenizer.chatTemplate) };
  } catch (e) {
    return { template: ChatTemplate.fallback(), error: (e as Error).message };
  }
}

export async function openModel(path: string, opts: LoadOptions = {}, onProgress?: (p: LoadProgress) => void): Promise<OpenModel> {
  const tokenizer = loadTokenizer(path);
  const model = await native().loadModel(path, opts, onProgress);
  const { template, error } = chatTemplateFor(tokenizer);
  return { path, model, tokenizer, template, templateError: error };
}
