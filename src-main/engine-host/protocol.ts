// The messages between the app (Electron main or `aha serve`) and the engine host process.
// Requests carry an id; the host answers each with exactly one `result` or `error`, after any
// number of `progress` / `prompt` / `text` events for that id.
import type { ChatMessage } from '../chat/template.ts';
import type { FinishReason, LoadOptions, ModelInfo } from '../engine/native.ts';
import type { Sampling } from '../contract/api.ts';

export type HostRequest =
  | { id: number; op: 'load'; path: string; options: LoadOptions }
  | { id: number; op: 'unload' }
  | { id: number; op: 'chat'; messages: ChatMessage[]; sampling: Sampling; stop?: string[] }
  | { id: number; op: 'cancel'; target: number }
  | { id: number; op: 'cpu' };

export interface LoadedModel {
  path: string;
  info: ModelInfo;
  templateName: string;
  /** Set when the model's template failed and the named fallback is used. */
  templateError: string | null;
}

export interface ChatResult {
  text: string;
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
}

export interface CpuResult {
  isa: string;
  physicalCores: number;
}

export interface HostResults {
  load: LoadedModel;
  unload: { ok: true };
  chat: ChatResult;
  cancel: { cancelled: boolean };
  cpu: CpuResult;
}

export type HostEvent =
  | { id: number; type: 'progress'; fraction: number; stage: string }
  | { id: number; type: 'prompt'; promptTokens: number; opensThink: boolean }
  | { id: number; type: 'text'; text: string; completionTokens: number };

export type HostMessage =
  | HostEvent
  | { id: number; type: 'result'; result: unknown }
  | { id: number; type: 'error'; message: string }
  | { type: 'ready'; pid: number };
