// Byte-level BPE pre-tokenizers by llama.cpp's `tokenizer.ggml.pre` name, as tokenizer.json
// pre_tokenizer objects: how a GGUF's embedded vocabulary becomes a tokenizer again.
const split = (regex: string) => ({ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false });
const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };

const QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const DEEPSEEK_V3 = [
  '\\p{N}{1,3}',
  '[一-龥぀-ゟ゠-ヿ]+',
  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
];

export const PRE_TOKENIZERS: Record<string, object> = {
  qwen2: { type: 'Sequence', pretokenizers: [split(QWEN2), byteLevel] },
  'deepseek-r1-qwen': { type: 'Sequence', pretokenizers: [split(QWEN2), byteLevel] },
  'llama-bpe': { type: 'Sequence', pretokenizers: [split(LLAMA3), byteLevel] },
  'deepseek-v3': { type: 'Sequence', pretokenizers: [...DEEPSEEK_V3.map(split), byteLevel] },
  gpt2: { type: 'Sequence', pretokenizers: [split(GPT2), byteLevel] },
};

/** llama.cpp's name for a tokenizer.json pre_tokenizer, recognised by its split regexes. */
export function preTokenizerName(pre: unknown): string {
  const regexes = JSON.stringify(pre ?? null);
  for (const [name, def] of Object.entries(PRE_TOKENIZERS)) {
    const want = (def as { pretokenizers: Array<{ pattern?: { Regex: string } }> }).pretokenizers.filter((p) => p.pattern).map((p) => p.pattern!.Regex);
    if (want.every((r) => regexes.includes(JSON.stringify(r).slice(1, -1)))) {
      if (name === 'qwen2' && regexes.includes('\\\\p{N}{1,3}')) continue;
      return name;
    }
  }
  return 'gpt2';
}
