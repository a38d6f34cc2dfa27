// The engine host: the process that owns the native engine, so that a native fault or a long
// computation never takes the window down. Started by Electron as a utilityProcess or by
// `aha serve` as a child process; it speaks protocol.ts over the parent port.
//
// One model at a time; generations run one after another in arrival order (the addon runs one
// job per model at a time), and `cancel` stops the running one or drops a queued one.
import { native } from '../engine/native.ts';
import { openModel, type OpenModel } from '../engine/open.ts';
import { renderChat } from '../engine/chat.ts';
import { generateText } from '../engine/stream.ts';
import type { HostMessage, HostRequest, HostResults, LoadedModel } from './protocol.ts';

interface ParentPort {
  on(event: 'message', listener: (e: { data: unknown }) => void): void;
  postMessage(message: unknown): void;
}

const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;

function send(message: HostMessage): void {
  if (parentPort) parentPort.postMessage(message);
  else process.send?.(message);
}

let current: { model: OpenModel; loaded: LoadedModel } | null = null;
/** Chat requests: the running one is first. */
const queue: Array<{ id: number; run: () => Promise<void> }> = [];
let running: number | null = null;
const cancelled = new Set<number>();

async function pump(): Promise<void> {
  if (running !== null) return;
  const next = queue.shift();
  if (!next) return;
  running = next.id;
  try {
    await next.run();
  } finally {
    running = null;
    cancelled.delete(next.id);
    void pump();
  }
}

/** Cancels the running generation and every queued one; resolves when none is left. */
async function stopAll(): Promise<void> {
  for (const q of queue) cancelled.add(q.id);
  if (running !== null) {
    cancelled.add(running);
    current?.model.model.cancel();
  }
  while (running !== null || queue.length) await new Promise((r) => setTimeout(r, 5));
}

async function unloadCurrent(): Promise<void> {
  const m = current;
  current = null;
  if (m) await m.model.model.unload();
}

const handlers: { [Op in HostRequest['op']]: (req: Extract<HostRequest, { op: Op }>) => Promise<HostResults[Op]> } = {
  async load(req) {
    await stopAll();
    await unloadCurrent();
    const model = await openModel(req.path, req.options, (p) => send({ id: req.id, type: 'progress', fraction: p.fraction, stage: p.stage }));
    const loaded: LoadedModel = { path: req.path, info: model.model.info(), templateName: model.template.name, templateError: model.templateError ?? null };
    current = { model, loaded };
    return loaded;
  },
  async unload() {
    await stopAll();
    await unloadCurrent();
    return { ok: true };
  },
  chat(req) {
    return new Promise((resolve, reject) => {
      queue.push({
        id: req.id,
        run: async () => {
          try {
            if (cancelled.has(req.id)) throw new Error('cancelled before it started');
            if (!current) throw new Error('no model is loaded');
            const m = current.model;
            const prompt = renderChat(m, req.messages);
            const context = current.loaded.info.context;
            if (prompt.tokens.length >= context)
              throw new Error(`the conversation is ${prompt.tokens.length} tokens long, more than the context of ${context}: start a new conversation or raise the context length in Settings`);
            send({ id: req.id, type: 'prompt', promptTokens: prompt.tokens.length, opensThink: prompt.opensThink });
            const s = req.sampling;
            const res = await generateText(
              m.model,
              m.tokenizer,
              {
                prompt: prompt.tokens,
                maxTokens: Math.min(s.maxTokens, context - prompt.tokens.length),
                temperature: s.temperature,
                topP: s.topP,
                topK: s.topK,
                minP: s.minP,
                repetitionPenalty: s.repetitionPenalty,
                seed: s.seed ?? Math.floor(Math.random() * 2 ** 31),
                stop: req.stop,
              },
              (text, completionTokens) => send({ id: req.id, type: 'text', text, completionTokens }),
            );
            resolve({
              text: res.text,
              finishReason: res.finishReason,
              promptTokens: res.promptTokens,
              completionTokens: res.tokens.length,
              prefillSeconds: res.prefillSeconds,
              decodeSeconds: res.decodeSeconds,
            });
          } catch (e) {
            reject(e);
          }
        },
      });
      void pump();
    });
  },
  async cancel(req) {
    if (running === req.target) {
      cancelled.add(req.target);
      current?.model.model.cancel();
      return { cancelled: true };
    }
    const at = queue.findIndex((q) => q.id === req.target);
    if (at >= 0) {
      cancelled.add(req.target);
      return { cancelled: true };
    }
    return { cancelled: false };
  },
  async cpu() {
    const c = native().cpuInfo();
    return { isa: c.isa, physicalCores: c.physicalCores };
  },
};

async function handle(raw: unknown): Promise<void> {
  const req = raw as HostRequest;
  if (typeof req?.id !== 'number' || typeof req.op !== 'string' || !(req.op in handlers)) {
    send({ id: typeof req?.id === 'number' ? req.id : -1, type: 'error', message: `engine host: unknown request ${JSON.stringify(raw)?.slice(0, 200)}` });
    return;
  }
  try {
    const handler = handlers[req.op] as (r: HostRequest) => Promise<unknown>;
    send({ id: req.id, type: 'result', result: await handler(req) });
  } catch (e) {
    send({ id: req.id, type: 'error', message: (e as Error)?.message ?? String(e) });
  }
}

if (parentPort) parentPort.on('message', (e) => void handle(e.data));
else if (process.send) process.on('message', (m) => void handle(m));
else {
  console.error('the engine host runs as a child of the Aha app (it needs an IPC channel)');
  process.exit(2);
}
// Without an IPC parent the host has no reason to live.
process.on('disconnect', () => process.exit(0));
send({ type: 'ready', pid: process.pid });
