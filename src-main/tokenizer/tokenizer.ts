// Tokenizers through @huggingface/tokenizers: from an HF folder (tokenizer.json and
// tokenizer_config.json) or from a GGUF's embedded vocabulary (tokenizer.ggml.*), which is
// turned back into the tokenizer.json it was made from.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { GgufFile } from '../formats/gguf.ts';
import { PRE_TOKENIZERS } from './pretokenizers.ts';

type Json = Record<string, unknown>;

function readJson(path: string): Json {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (e) {
    throw new Error(`${path}: invalid JSON: ${(e as Error).message}`);
  }
}

/** A token's text from a tokenizer_config value: a string or an AddedToken object. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

// llama.cpp token types
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

export class Tokenizer {
  readonly bosToken?: string;
  readonly eosToken?: string;
  readonly bosId?: number;
  readonly eosIds: number[];
  readonly addBos: boolean;
  readonly chatTemplate?: string;
  readonly specialIds: Set<number>;

  private constructor(
    private readonly hf: HfTokenizer,
    readonly tokenizerJson: Json,
    readonly config: Json,
    readonly source: string,
  ) {
    this.bosToken = tokenText(config.bos_token);
    this.eosToken = tokenText(config.eos_token);
    this.bosId = this.bosToken !== undefined ? hf.token_to_id(this.bosToken) : undefined;
    const eos = this.eosToken !== undefined ? hf.token_to_id(this.eosToken) : undefined;
    this.eosIds = eos !== undefined ? [eos] : [];
    this.addBos = config.add_bos_token === true;
    this.chatTemplate = typeof config.chat_template === 'string' ? config.chat_template : undefined;
    const added = (tokenizerJson.added_tokens as Array<{ id: number; special?: boolean }> | undefined) ?? [];
    this.specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
  }

  private static build(json: Json, config: Json, source: string): Tokenizer {
    const model = json.model as Json | undefined;
    if (!model || typeof model !== 'object' || typeof model.vocab !== 'object') throw new Error(`${source}: tokenizer.json has no model.vocab`);
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer(json, config);
    } catch (e) {
      throw new Error(`${source}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    return new Tokenizer(hf, json, config, source);
  }

  static fromHfFolder(dir: string): Tokenizer {
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file)) throw new Error(`${dir}: no tokenizer.json`);
    const cfgFile = join(dir, 'tokenizer_config.json');
    const config = existsSync(cfgFile) ? readJson(cfgFile) : {};
    return Tokenizer.build(readJson(file), config, file);
  }

  static fromGguf(g: GgufFile): Tokenizer {
    const { json, config } = hfTokenizerFromGguf(g);
    return Tokenizer.build(json, config, g.path);
  }

  get vocabSize(): number {
    return Object.keys((this.tokenizerJson.model as Json).vocab as Json).length + ((this.tokenizerJson.added_tokens as unknown[]) ?? []).length;
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    const ids = this.hf.encode(text, { add_special_tokens: false }).ids;
    if ((opts.addSpecialTokens ?? true) && this.addBos && this.bosId !== undefined && ids[0] !== this.bosId) return [this.bosId, ...ids];
    return ids;
  }

  decode(ids: number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    return this.hf.decode(ids, { skip_special_tokens: opts.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  tokenToId(token: string): number | undefined {
    return this.hf.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.hf.id_to_token(id);
  }
}

/** What llama.cpp's converter writes for a byte-level BPE tokenizer, from tokenizer.json + config. */
export function ggufVocabFromHf(json: Json, config: Json, preName: string) {
  const model = json.model as { vocab: Record<string, number>; merges: Array<string | [string, string]> };
  const added = (json.added_tokens as Array<{ id: number; content: string; special: boolean }>) ?? [];
  let n = 0;
  for (const id of Object.values(model.vocab)) n = Math.max(n, id + 1);
  for (const t of added) n = Math.max(n, t.id + 1);
  const tokens: string[] = Array.from({ length: n }, (_, i) => `[PAD${i}]`);
  const types: number[] = new Array(n).fill(USER_DEFINED);
  for (const [tok, id] of Object.entries(model.vocab)) {
    tokens[id] = tok;
    types[id] = NORMAL;
  }
  for (const t of added) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? CONTROL : USER_DEFINED;
  }
  const merges = model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const id = (v: unknown) => {
    const t = tokenText(v);
    if (t === undefined) return undefined;
    const i = tokens.indexOf(t);
    return i >= 0 ? i : undefined;
  };
  return {
    model: 'gpt2',
    pre: preName,
    tokens,
    types,
    merges,
    bosId: id(config.bos_token),
    eosId: id(config.eos_token),
    padId: id(config.pad_token),
    addBos: config.add_bos_token === true,
    chatTemplate: typeof config.chat_template === 'string' ? config.chat_template : undefined,
  };
}

/** The tokenizer.json (and the tokenizer_config parts that matter) a GGUF's vocabulary came from. */
export function hfTokenizerFromGguf(g: GgufFile): { json: Json; config: Json } {
  const fail = (msg: string): never => {
    throw new Error(`${g.path}: ${msg}`);
  };
  const model = g.get('tokenizer.ggml.model');
  if (model === undefined) fail('no embedded tokenizer (tokenizer.ggml.model is missing)');
  if (model !== 'gpt2') fail(`tokenizer model '${String(model)}' is not supported (byte-level BPE "gpt2" is)`);
  const tokens = g.get('tokenizer.ggml.tokens');
  const types = g.get('tokenizer.ggml.token_type');
  const merges = g.get('tokenizer.ggml.merges');
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string')) fail('tokenizer.ggml.tokens is not an array of strings');
  if (!Array.isArray(merges) || merges.some((t) => typeof t !== 'string')) fail('tokenizer.ggml.merges is not an array of strings');
  const toks = tokens as string[];
  const tt = Array.isArray(types) ? (types as number[]) : [];
  if (tt.length && tt.length !== toks.length) fail(`tokenizer.ggml.token_type has ${tt.length} entries for ${toks.length} tokens`);
  const pre = String(g.get('tokenizer.ggml.pre') ?? 'gpt2');
  const preTokenizer = PRE_TOKENIZERS[pre] ?? PRE_TOKENIZERS.gpt2;
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  toks.forEach((t, i) => {
    const type = tt[i] ?? NORMAL;
    if (type === UNUSED) return;
    if (type === CONTROL || type === USER_DEFINED) {
      if (/^\[PAD\d+\]$/.test(t)) return;
      added.push({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === CONTROL });
    } else {
      vocab[t] = i;
    }
  });
  const json: Json = {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: merges as string[] },
  };
  const at = (k: string) => {
    const v = g.get(k);
    return typeof v === 'number' || typeof v === 'bigint' ? toks[Number(v)] : undefined;
  };
  const config: Json = {
    bos_token: at('tokenizer.ggml.bos_token_id'),
    eos_token: at('tokenizer.ggml.eos_token_id'),
    pad_token: at('tokenizer.ggml.padding_token_id'),
    add_bos_token: g.get('tokenizer.ggml.add_bos_token') === true,
    chat_template: g.get('tokenizer.chat_template'),
  };
  return { json, config };
}
