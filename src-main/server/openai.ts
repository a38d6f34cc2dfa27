// The OpenAI-compatible API over the app's services: GET /v1/models and POST
// /v1/chat/completions (streaming SSE and not). The reasoning comes back apart from the answer
// as `reasoning_content`, as DeepSeek's own API returns it; errors are OpenAI-shaped bodies with
// proper status codes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ApiError, type ModelEntry } from '../contract/api.ts';
import type { App } from '../services/app.ts';
import { ReasoningSplitter } from '../services/chat/reasoning.ts';
import type { ChatMessage } from '../chat/template.ts';
import { getSettings } from '../db/settings.ts';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = 'invalid_request_error',
    readonly code: string | null = null,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

export function sendError(res: ServerResponse, e: unknown): void {
  const err =
    e instanceof HttpError
      ? e
      : e instanceof ApiError
        ? new HttpError(e.code === 'not_found' ? 404 : e.code === 'invalid_request' ? 400 : e.code === 'conflict' ? 409 : 500, e.message, e.code === 'engine' ? 'server_error' : 'invalid_request_error', e.code)
        : new HttpError(500, (e as Error)?.message ?? String(e), 'server_error');
  if (res.headersSent) {
    // Mid-stream: the only way left to say it is an SSE error event.
    if (!res.writableEnded) res.end(`data: ${JSON.stringify({ error: { message: err.message, type: err.type, code: err.code, param: err.param } })}\n\n`);
    return;
  }
  res.writeHead(err.status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message: err.message, type: err.type, param: err.param, code: err.code } }));
}

const MAX_BODY = 16 * 1024 * 1024;

export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `the request body is larger than ${MAX_BODY} bytes`);
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text.trim()) throw new HttpError(400, 'the request body is empty; expected JSON');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}`);
  }
}

const Content = z.union([
  z.string(),
  z.array(z.object({ type: z.literal('text'), text: z.string() }).passthrough()),
  z.null(),
]);

const ChatCompletionRequest = z.object({
  model: z.string().min(1),
  messages: z
    .array(
      z
        .object({
          role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
          content: Content.optional(),
        })
        .passthrough(),
    )
    .min(1),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).passthrough().nullable().optional(),
  temperature: z.number().min(0).max(2).nullable().optional(),
  top_p: z.number().gt(0).max(1).nullable().optional(),
  top_k: z.number().int().min(0).nullable().optional(),
  min_p: z.number().min(0).max(1).nullable().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  stop: z.union([z.string(), z.array(z.string()).max(16)]).nullable().optional(),
  seed: z.number().int().min(0).nullable().optional(),
  presence_penalty: z.number().min(-2).max(2).nullable().optional(),
  frequency_penalty: z.number().min(-2).max(2).nullable().optional(),
  repetition_penalty: z.number().min(0.5).max(2).nullable().optional(),
  n: z.number().int().min(1).max(1, 'n > 1 is not supported: ask for one choice per request').nullable().optional(),
});

function openaiModel(m: ModelEntry) {
  return { id: m.name, object: 'model', created: Math.floor(m.addedAt / 1000), owned_by: m.source === 'added' ? 'aha' : m.source };
}

export function listModels(app: App) {
  return { object: 'list', data: app.library.list().filter((m) => !m.missing).map(openaiModel) };
}

function resolveModel(app: App, name: string): ModelEntry {
  const all = app.library.list();
  const m = all.find((x) => x.name === name) ?? all.find((x) => x.path === name) ?? all.find((x) => String(x.id) === name);
  if (!m) throw new HttpError(404, `The model '${name}' does not exist; GET /v1/models lists the ones this server has`, 'invalid_request_error', 'model_not_found', 'model');
  if (m.missing) throw new HttpError(404, `The model '${name}' is missing on disk (${m.path})`, 'invalid_request_error', 'model_not_found', 'model');
  return m;
}

function text(content: z.infer<typeof Content> | undefined): string {
  if (content == null) return '';
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}

export async function chatCompletions(app: App, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const parsed = ChatCompletionRequest.safeParse(await readJson(req));
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new HttpError(400, `${i.path.join('.') || 'body'}: ${i.message}`, 'invalid_request_error', null, i.path.join('.') || null);
  }
  const body = parsed.data;
  const model = resolveModel(app, body.model);
  const messages: ChatMessage[] = body.messages.map((m) => ({ role: m.role === 'developer' ? 'system' : m.role, content: text(m.content) }));
  const s = getSettings(app.db).sampling;
  const sampling = {
    temperature: body.temperature ?? s.temperature,
    topP: body.top_p ?? s.topP,
    topK: body.top_k ?? s.topK,
    minP: body.min_p ?? s.minP,
    repetitionPenalty: body.repetition_penalty ?? s.repetitionPenalty,
    maxTokens: body.max_completion_tokens ?? body.max_tokens ?? s.maxTokens,
    seed: body.seed ?? null,
  };
  const stop = body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop;

  await app.engine.ensure(model);
  const id = `chatcmpl-${randomUUID()}`;
  const created = Math.floor(Date.now() / 1000);
  let splitter = new ReasoningSplitter(false);
  const chunk = (delta: Record<string, string>, finish: string | null) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: model.name, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`;
  const stream = body.stream === true;
  let aborted = false;
  const job = app.engine.chat({ messages, sampling, stop }, (e) => {
    if (e.type === 'prompt') splitter = new ReasoningSplitter(e.opensThink);
    if (e.type !== 'text' || !stream) return;
    const d = splitter.push(e.text);
    if (d.reasoning) res.write(chunk({ reasoning_content: d.reasoning }, null));
    if (d.content) res.write(chunk({ content: d.content }, null));
  });
  // The client went away: stop generating for it.
  res.on('close', () => {
    if (!res.writableFinished) {
      aborted = true;
      void app.engine.cancel(job.id).catch(() => {});
    }
  });
  if (stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(chunk({ role: 'assistant', content: '' }, null));
  }
  const result = await job.done;
  if (aborted) return;
  const finishReason = result.finishReason === 'length' || result.finishReason === 'context' ? 'length' : 'stop';
  const usage = { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, total_tokens: result.promptTokens + result.completionTokens };
  if (stream) {
    const rest = splitter.finish();
    if (rest.reasoning) res.write(chunk({ reasoning_content: rest.reasoning }, null));
    if (rest.content) res.write(chunk({ content: rest.content }, null));
    res.write(chunk({}, finishReason));
    if (body.stream_options?.include_usage)
      res.write(`data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: model.name, choices: [], usage })}\n\n`);
    res.end('data: [DONE]\n\n');
    return;
  }
  const whole = splitter.push(result.text);
  const rest = splitter.finish();
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      id,
      object: 'chat.completion',
      created,
      model: model.name,
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: whole.content + rest.content, reasoning_content: whole.reasoning + rest.reasoning },
          logprobs: null,
          finish_reason: finishReason,
        },
      ],
      usage,
    }),
  );
}
