// `aha serve`: the whole app in a browser. One HTTP server carries
//   /            the built renderer (static files, the SPA's index.html for unknown paths)
//   /api/ws      the contract over a WebSocket (requests, responses, events)
//   /v1/...      the OpenAI-compatible API
// Loopback by default. With an API key, /v1 wants `Authorization: Bearer KEY` and the WebSocket
// wants `{"auth": KEY}` as its first message (the page takes the key from ?key=).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import { dispatch, WireRequest, type WireEvent, type WireResponse } from '../contract/api.ts';
import type { App } from '../services/app.ts';
import { chatCompletions, HttpError, listModels, sendError } from './openai.ts';

export interface ServeOptions {
  host: string;
  port: number;
  apiKey?: string;
  /** The built renderer (out/renderer). */
  rendererDir: string;
}

export interface RunningServer {
  url: string;
  server: Server;
  close(): Promise<void>;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.map': 'application/json',
};

const CSP = "default-src 'self'; script-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

function sameKey(given: string | undefined, key: string): boolean {
  if (given === undefined) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

function serveStatic(dir: string, req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, `${req.method} is not allowed here`);
  const url = new URL(req.url ?? '/', 'http://x');
  let rel: string;
  try {
    rel = normalize(decodeURIComponent(url.pathname)).replace(/^([/\\])+/, '');
  } catch {
    throw new HttpError(400, 'malformed path');
  }
  const root = resolve(dir);
  let file = resolve(root, rel);
  if (file !== root && !file.startsWith(root + sep)) throw new HttpError(404, 'not found');
  // Unknown paths get the app (it routes on the client).
  if (!existsSync(file) || statSync(file).isDirectory()) file = join(root, 'index.html');
  if (!existsSync(file)) throw new HttpError(503, `the app is not built (no ${file}); run \`npm run build\``, 'server_error');
  const type = TYPES[extname(file)] ?? 'application/octet-stream';
  res.writeHead(200, {
    'content-type': type,
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': file.endsWith('index.html') ? 'no-cache' : 'public, max-age=3600',
  });
  if (req.method === 'HEAD') res.end();
  else createReadStream(file).pipe(res);
}

export async function serve(app: App, opts: ServeOptions): Promise<RunningServer> {
  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      try {
        if (path.startsWith('/v1/') || path === '/v1') {
          res.setHeader('access-control-allow-origin', '*');
          if (req.method === 'OPTIONS') {
            res.writeHead(204, { 'access-control-allow-headers': 'authorization, content-type', 'access-control-allow-methods': 'GET, POST, OPTIONS' });
            res.end();
            return;
          }
          if (opts.apiKey && !sameKey(req.headers.authorization?.replace(/^Bearer\s+/i, ''), opts.apiKey))
            throw new HttpError(401, 'Incorrect API key provided: pass it as "Authorization: Bearer KEY"', 'invalid_request_error', 'invalid_api_key');
          if (path === '/v1/models' && req.method === 'GET') {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(listModels(app)));
            return;
          }
          if (path === '/v1/chat/completions') {
            if (req.method !== 'POST') throw new HttpError(405, `${req.method} /v1/chat/completions: use POST`);
            await chatCompletions(app, req, res);
            return;
          }
          throw new HttpError(404, `Unknown endpoint ${req.method} ${path}; this server has GET /v1/models and POST /v1/chat/completions`, 'invalid_request_error', 'unknown_url');
        }
        if (path === '/api/health') {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ ok: true, engine: app.engine.state.status }));
          return;
        }
        serveStatic(opts.rendererDir, req, res);
      } catch (e) {
        sendError(res, e);
      }
    })();
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 16 * 1024 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    // Only pages this server served may open the socket (a foreign site cannot drive the app).
    const origin = req.headers.origin;
    const host = req.headers.host;
    if (path !== '/api/ws' || (origin !== undefined && host !== undefined && new URL(origin).host !== host)) {
      socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  const authed = new Set<WebSocket>();
  wss.on('connection', (ws: WebSocket) => {
    if (!opts.apiKey) authed.add(ws);
    ws.on('message', (raw) => {
      void (async () => {
        let msg: unknown;
        try {
          msg = JSON.parse(String(raw));
        } catch {
          ws.send(JSON.stringify({ id: -1, error: { code: 'invalid_request', message: 'not JSON' } }));
          return;
        }
        if (!authed.has(ws)) {
          const key = (msg as { auth?: unknown })?.auth;
          if (typeof key === 'string' && sameKey(key, opts.apiKey!)) {
            authed.add(ws);
            ws.send(JSON.stringify({ id: 0, result: { authenticated: true } }));
          } else ws.close(4401, 'an API key is required');
          return;
        }
        const req = WireRequest.safeParse(msg);
        if (!req.success) {
          ws.send(JSON.stringify({ id: (msg as { id?: unknown })?.id ?? -1, error: { code: 'invalid_request', message: 'expected {id, channel, payload}' } }));
          return;
        }
        const envelope = await dispatch(app.handlers, req.data.channel, req.data.payload);
        const response: WireResponse = { id: req.data.id, ...envelope };
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(response));
      })();
    });
    ws.on('close', () => authed.delete(ws));
  });
  const unsubscribe = app.bus.subscribe((event, data) => {
    const text = JSON.stringify({ event, data } satisfies WireEvent);
    for (const ws of authed) if (ws.readyState === ws.OPEN) ws.send(text);
  });

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolveListen());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const shownHost = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `http://${shownHost === '0.0.0.0' ? '127.0.0.1' : shownHost}:${port}`,
    server,
    async close() {
      unsubscribe();
      for (const ws of wss.clients) ws.terminate();
      wss.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
