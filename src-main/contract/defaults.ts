// The contract's default values, as plain data: the renderer imports them without pulling in
// zod (whose schema compiler probes `new Function`, which the app's CSP forbids).
import type { Sampling, Settings } from './api.ts';

/** R1's recommended sampling (DeepSeek's model card): temperature 0.6, top-p 0.95. */
export const defaultSampling: Sampling = {
  temperature: 0.6,
  topP: 0.95,
  topK: 0,
  minP: 0,
  repetitionPenalty: 1,
  maxTokens: 4096,
  seed: null,
};

export const samplingPresets = {
  'R1 recommended': defaultSampling,
  Precise: { ...defaultSampling, temperature: 0.2, topP: 0.9 },
  Greedy: { ...defaultSampling, temperature: 0, topP: 1 },
  Creative: { ...defaultSampling, temperature: 0.9, topP: 0.98 },
} as const satisfies Record<string, Sampling>;

export const defaultSettings: Settings = {
  threads: 0,
  contextLength: 4096,
  sampling: defaultSampling,
  systemPrompt: '',
  theme: 'system',
};
