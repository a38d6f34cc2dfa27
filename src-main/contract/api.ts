// The one contract between the renderer and the services: every request, response and event.
// The schemas validate payloads at the boundary (Electron IPC and the WebSocket alike); the
// types the renderer and the handlers use are inferred from them, so they cannot drift.
//
// Transport shape (both transports):
//   request  { id, channel, payload }  →  response { id, result } | { id, error: { code, message } }
//   event    { event, data }           (pushed to every subscriber; `on` returns a disposer)
import { z } from 'zod';
import type { Dataset, DatasetCounts, DatasetItem } from '../db/datasets.ts';
import type { StoredGrader } from '../db/graders.ts';
import type { Run, RunRollout, RunStepMetrics } from '../db/runs.ts';
import type { ImportReport } from '../services/datasets/import.ts';
import type { PlaygroundResult } from '../services/graders/playground.ts';

// The defaults live apart, without zod, so that the renderer can take them alone.
export { defaultSampling, samplingPresets, defaultSettings } from './defaults.ts';

// ---------------------------------------------------------------------------------------------
// Shared shapes

export const Sampling = z.object({
  temperature: z.number().min(0).max(5),
  topP: z.number().gt(0).max(1),
  topK: z.number().int().min(0).max(100_000),
  minP: z.number().min(0).max(1),
  repetitionPenalty: z.number().min(0.5).max(2),
  maxTokens: z.number().int().min(1).max(131_072),
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullable(),
});
export type Sampling = z.infer<typeof Sampling>;

export const Settings = z.object({
  /** Engine threads; 0 = one per physical core. */
  threads: z.number().int().min(0).max(512),
  /** Context length per conversation, in tokens. */
  contextLength: z.number().int().min(256).max(1_048_576),
  sampling: Sampling,
  systemPrompt: z.string().max(100_000),
  theme: z.enum(['system', 'light', 'dark']),
});
export type Settings = z.infer<typeof Settings>;

export const ModelSource = z.enum(['added', 'lmstudio', 'ollama']);
export type ModelSource = z.infer<typeof ModelSource>;

export const ModelEntry = z.object({
  id: z.number().int(),
  /** A GGUF file or a Hugging Face folder (config.json + safetensors). */
  path: z.string(),
  name: z.string(),
  source: ModelSource,
  format: z.enum(['gguf', 'safetensors']),
  architecture: z.string(),
  /** Bytes on disk (all shards). */
  sizeBytes: z.number(),
  /** Dominant weight type ("Q4_K_M", "Q8_0", "BF16"...). */
  quantization: z.string(),
  parameters: z.number(),
  contextLength: z.number().int(),
  /** Weights plus a KV cache for `contextLength` tokens at the default context setting. */
  memoryEstimateBytes: z.number(),
  /** The file or folder is gone; the entry stays until the user removes it. */
  missing: z.boolean(),
  addedAt: z.number(),
});
export type ModelEntry = z.infer<typeof ModelEntry>;

export const EngineState = z.object({
  status: z.enum(['idle', 'loading', 'ready', 'error', 'crashed']),
  modelId: z.number().int().nullable(),
  /** 0..1 while loading. */
  progress: z.number(),
  message: z.string(),
  /** Resident engine details once ready. */
  loaded: z
    .object({
      architecture: z.string(),
      parameters: z.number(),
      context: z.number().int(),
      threads: z.number().int(),
      weightBytes: z.number(),
      kvBytes: z.number(),
    })
    .nullable(),
});
export type EngineState = z.infer<typeof EngineState>;

export const MessageStatus = z.enum(['streaming', 'done', 'stopped', 'error']);

export const Message = z.object({
  id: z.number().int(),
  conversationId: z.number().int(),
  /** Messages form a tree: regenerations and edits are siblings under one parent. */
  parentId: z.number().int().nullable(),
  role: z.enum(['user', 'assistant']),
  /** The answer (for an assistant) or the user's text. */
  content: z.string(),
  /** The model's reasoning (the text inside <think>…</think>), stored apart from the answer. */
  reasoning: z.string(),
  status: MessageStatus,
  error: z.string().nullable(),
  modelId: z.number().int().nullable(),
  promptTokens: z.number().int(),
  completionTokens: z.number().int(),
  reasoningTokens: z.number().int(),
  /** Time spent reasoning ("Thought for N s"), in milliseconds. */
  reasoningMs: z.number(),
  totalMs: z.number(),
  createdAt: z.number(),
});
export type Message = z.infer<typeof Message>;

export const Conversation = z.object({
  id: z.number().int(),
  title: z.string(),
  modelId: z.number().int().nullable(),
  systemPrompt: z.string(),
  sampling: Sampling,
  /** The leaf of the branch on screen; the thread is the path from the root to it. */
  leafId: z.number().int().nullable(),
  createdAt: z.number(),
  updatedAt: z.number(),
});
export type Conversation = z.infer<typeof Conversation>;

export const AppInfo = z.object({
  version: z.string(),
  dataDir: z.string(),
  /** 'electron' in the desktop window, 'server' when served by `aha serve`. */
  shell: z.enum(['electron', 'server']),
  cpu: z.object({ isa: z.string(), physicalCores: z.number().int() }),
  /** Folders scanned for models (LM Studio, Ollama), whether they exist or not. */
  discoveryFolders: z.array(z.object({ source: ModelSource, path: z.string(), exists: z.boolean() })),
});
export type AppInfo = z.infer<typeof AppInfo>;

// ---------------------------------------------------------------------------------------------
// Datasets and graders (their shapes are the data layer's; only payloads are validated here)

export const DatasetPreset = z.enum(['generic', 'gsm8k', 'math', 'code']);
export type DatasetSummary = Dataset & { counts: DatasetCounts };

// ---------------------------------------------------------------------------------------------
// Requests: channel → [payload schema, result schema]

const Id = z.object({ id: z.number().int() });
const None = z.object({}).strict();
const Ok = z.object({ ok: z.literal(true) });

export const channels = {
  'app.info': [None, AppInfo],

  'settings.get': [None, Settings],
  'settings.set': [Settings.partial().strict(), Settings],

  'models.list': [None, z.array(ModelEntry)],
  /** Adds a GGUF file or an HF folder; reads its header to fill the entry. */
  'models.add': [z.object({ path: z.string().min(1) }).strict(), ModelEntry],
  'models.remove': [Id.strict(), Ok],
  /** Rescans LM Studio and Ollama folders and re-checks every entry for missing files. */
  'models.refresh': [None, z.array(ModelEntry)],
  'models.load': [Id.strict(), EngineState],
  'models.unload': [None, EngineState],
  'models.state': [None, EngineState],

  'chat.list': [None, z.array(Conversation)],
  'chat.get': [Id.strict(), z.object({ conversation: Conversation, messages: z.array(Message) })],
  'chat.create': [z.object({ modelId: z.number().int().nullable().optional(), systemPrompt: z.string().optional() }).strict(), Conversation],
  'chat.update': [
    z.object({
      id: z.number().int(),
      title: z.string().min(1).max(500).optional(),
      modelId: z.number().int().nullable().optional(),
      systemPrompt: z.string().max(100_000).optional(),
      sampling: Sampling.optional(),
    }).strict(),
    Conversation,
  ],
  'chat.delete': [Id.strict(), Ok],
  /**
   * Sends a user message and starts the answer. parentId: the message it follows (null for the
   * first; an earlier message's parent to edit and resend, keeping the old branch).
   */
  'chat.send': [
    z.object({ conversationId: z.number().int(), content: z.string().min(1).max(1_000_000), parentId: z.number().int().nullable().optional() }).strict(),
    z.object({ user: Message, assistant: Message }),
  ],
  /** A new answer beside an assistant message (same parent); the old one stays as a branch. */
  'chat.regenerate': [z.object({ messageId: z.number().int() }).strict(), z.object({ assistant: Message })],
  'chat.stop': [z.object({ conversationId: z.number().int() }).strict(), Ok],
  /** Shows another branch: the thread becomes the path to this leaf. */
  'chat.selectLeaf': [z.object({ conversationId: z.number().int(), leafId: z.number().int() }).strict(), Conversation],

  'datasets.list': [None, z.array(z.custom<DatasetSummary>())],
  /** Imports a JSONL, JSON or CSV file; unreadable rows come back with their line numbers. */
  'datasets.import': [
    z
      .object({
        path: z.string().min(1),
        name: z.string().min(1).max(200).optional(),
        preset: DatasetPreset.optional(),
        format: z.enum(['jsonl', 'json', 'csv']).optional(),
        mapping: z.record(z.enum(['prompt', 'reference', 'solution', 'tests', 'system', 'tags', 'split', 'meta']), z.union([z.string(), z.array(z.string())])).optional(),
      })
      .strict(),
    z.custom<ImportReport>(),
  ],
  /** A built-in, seeded generator: arithmetic word problems or countdown. */
  'datasets.generate': [
    z
      .object({
        generator: z.enum(['arithmetic', 'countdown']),
        count: z.number().int().min(1).max(1_000_000),
        seed: z.number().int().min(0).max(2 ** 32 - 1),
        name: z.string().min(1).max(200).optional(),
      })
      .strict(),
    z.custom<DatasetSummary>(),
  ],
  'datasets.items': [
    z.object({ id: z.number().int(), offset: z.number().int().min(0).default(0), limit: z.number().int().min(1).max(1000).default(50), split: z.enum(['train', 'eval']).optional(), tag: z.string().optional() }).strict(),
    z.object({ items: z.array(z.custom<DatasetItem>()), total: z.number().int() }),
  ],
  'datasets.updateItem': [
    z.object({ id: z.number().int(), prompt: z.string().min(1).optional(), reference: z.string().nullable().optional(), systemPrompt: z.string().nullable().optional(), tags: z.array(z.string()).optional() }).strict(),
    z.custom<DatasetItem>(),
  ],
  'datasets.dedupe': [Id.strict(), z.object({ removed: z.number().int(), remaining: z.number().int() })],
  /** Train/eval split; the same seed gives the same split. */
  'datasets.split': [z.object({ id: z.number().int(), seed: z.number().int().min(0), evalFraction: z.number().min(0).max(1) }).strict(), z.object({ train: z.number().int(), eval: z.number().int() })],
  'datasets.export': [z.object({ id: z.number().int(), path: z.string().min(1) }).strict(), z.object({ written: z.number().int(), path: z.string() })],
  'datasets.delete': [Id.strict(), Ok],

  /** Grader configurations, latest version of each name. */
  'graders.list': [None, z.array(z.custom<StoredGrader>())],
  /** Stores a grader configuration as the next version of its name (validated first). */
  'graders.save': [z.object({ config: z.record(z.string(), z.unknown()) }).strict(), z.custom<StoredGrader>()],
  /** The playground: a grader (a stored name, or a configuration) run on given completions. */
  'graders.run': [
    z
      .object({
        grader: z.union([z.object({ name: z.string().min(1), version: z.number().int().optional() }).strict(), z.object({ config: z.record(z.string(), z.unknown()) }).strict()]),
        items: z.array(z.object({ prompt: z.string().optional(), completion: z.string(), reference: z.unknown().optional() }).strict()).min(1).max(1000),
      })
      .strict(),
    z.array(z.custom<PlaygroundResult>()),
  ],

  /** Training runs (`aha train`, the app), newest first; read-only: the trainer writes them. */
  'runs.list': [None, z.array(z.custom<Run>())],
  'runs.get': [Id.strict(), z.custom<Run>()],
  /** A run's metrics in step order; afterStep: only the steps after it (a live chart's new points). */
  'runs.metrics': [z.object({ id: z.number().int(), afterStep: z.number().int().min(0).default(0) }).strict(), z.array(z.custom<RunStepMetrics>())],
  /** A page of a run's sampled rollouts in (step, position) order, or of one step's. */
  'runs.rollouts': [
    z.object({ id: z.number().int(), step: z.number().int().min(1).optional(), offset: z.number().int().min(0).default(0), limit: z.number().int().min(1).max(1000).default(50) }).strict(),
    z.object({ rollouts: z.array(z.custom<RunRollout>()), total: z.number().int() }),
  ],
} as const;

export type Channel = keyof typeof channels;
export type RequestOf<C extends Channel> = z.input<(typeof channels)[C][0]>;
export type ResultOf<C extends Channel> = z.infer<(typeof channels)[C][1]>;

// ---------------------------------------------------------------------------------------------
// Events: pushed to every subscriber.

export const events = {
  'engine.state': EngineState,
  'models.changed': z.object({ models: z.array(ModelEntry) }),
  'chat.changed': z.object({ conversation: Conversation }),
  /** Streamed text of an answer: appended to the message's reasoning or content. */
  'chat.delta': z.object({
    conversationId: z.number().int(),
    messageId: z.number().int(),
    reasoning: z.string(),
    content: z.string(),
    /** Reasoning still open (no </think> seen yet). */
    thinking: z.boolean(),
    completionTokens: z.number().int(),
  }),
  /** The message as stored once generation ends (done, stopped or error). */
  'chat.done': z.object({ message: Message }),
} as const;

export type EventName = keyof typeof events;
export type EventOf<E extends EventName> = z.infer<(typeof events)[E]>;

// ---------------------------------------------------------------------------------------------
// Envelope and errors

export const ErrorCode = z.enum(['invalid_request', 'not_found', 'conflict', 'engine', 'internal']);
export type ErrorCode = z.infer<typeof ErrorCode>;

export interface ApiErrorBody {
  code: ErrorCode;
  message: string;
}

export type Envelope<T> = { result: T; error?: undefined } | { result?: undefined; error: ApiErrorBody };

/** An error a handler throws on purpose; its message is shown to the user as it is. */
export class ApiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** The wire messages of the WebSocket transport (and the payload of the Electron IPC one). */
export const WireRequest = z.object({ id: z.number().int(), channel: z.string(), payload: z.unknown() });
export type WireRequest = z.infer<typeof WireRequest>;
export type WireResponse = { id: number } & Envelope<unknown>;
export type WireEvent = { event: EventName; data: unknown };

/** The object the renderer talks to; both transports implement it. */
export interface Api {
  invoke<C extends Channel>(channel: C, payload: RequestOf<C>): Promise<ResultOf<C>>;
  on<E extends EventName>(event: E, listener: (data: EventOf<E>) => void): () => void;
}

export type Handlers = { [C in Channel]: (payload: z.infer<(typeof channels)[C][0]>) => Promise<ResultOf<C>> | ResultOf<C> };

function describe(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'payload'}: ${i.message}`).join('; ');
}

/**
 * Validates a request at the boundary and runs its handler; never throws. Unknown channels,
 * bad payloads and handler failures all come back as an error envelope.
 */
export async function dispatch(handlers: Handlers, channel: string, payload: unknown): Promise<Envelope<unknown>> {
  if (!Object.hasOwn(channels, channel)) return { error: { code: 'invalid_request', message: `unknown channel "${channel}"` } };
  const [input] = channels[channel as Channel];
  const parsed = input.safeParse(payload ?? {});
  if (!parsed.success) return { error: { code: 'invalid_request', message: `${channel}: ${describe(parsed.error)}` } };
  try {
    const handler = handlers[channel as Channel] as (p: unknown) => unknown;
    return { result: await handler(parsed.data) };
  } catch (e) {
    if (e instanceof ApiError) return { error: { code: e.code, message: e.message } };
    return { error: { code: 'internal', message: (e as Error)?.message ?? String(e) } };
  }
}
