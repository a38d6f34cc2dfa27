// The app end to end in Debian's Chromium (playwright-core), served by `aha serve`'s server with
// the scripted tiny R1 model: add the model in Models, load it, chat, watch the reasoning fold
// and the answer stream, stop a long answer, regenerate into a branch, reload the page and find
// the conversation intact. Screenshots go to test-artifacts/e2e/ (look at them).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { createApp, type App } from '../../src-main/services/app.ts';
import { forkHost } from '../../src-main/engine-host/client.ts';
import { serve, type RunningServer } from '../../src-main/server/server.ts';
import { makeScriptedModel, SCRIPT_REASONING } from '../fixtures/make-scripted-model.ts';

const root = join(import.meta.dirname, '../..');
const shots = join(root, 'test-artifacts/e2e');
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

let dir: string;
let app: App;
let server: RunningServer;
let browser: BrowserContext;
let page: Page;
let scripted: string;

before(async () => {
  scripted = makeScriptedModel();
  mkdirSync(shots, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'aha-e2e-'));
  app = await createApp({ dataDir: join(dir, 'data'), spawnHost: forkHost(), shell: 'server', home: join(dir, 'home'), defaultModel: false });
  server = await serve(app, { host: '127.0.0.1', port: 0, rendererDir: join(root, 'out/renderer') });
  // A fresh profile every run (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(join(dir, 'chromium'), {
    executablePath,
    viewport: { width: 1280, height: 800 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
});

after(async () => {
  await browser?.close();
  await server?.close();
  await app?.close();
  rmSync(dir, { recursive: true, force: true });
});

const shot = (name: string) => page.screenshot({ path: join(shots, `${name}.png`) });

test('the app with no model says what to do', async () => {
  await page.goto(server.url);
  await page.getByTestId('nav-chat').waitFor();
  await page.getByText('.lmstudio/models', { exact: false }).first().waitFor();
  const body = await page.locator('body').innerText();
  assert.match(body, /model/i);
  assert.match(body, /\.lmstudio\/models/, 'it names the LM Studio folder it looked in');
  assert.match(body, /\.ollama\/models/, 'it names the Ollama folder it looked in');
  await shot('01-empty');
});

test('add the tiny model in Models and load it', async () => {
  await page.getByTestId('nav-models').click();
  await page.getByTestId('model-path').fill(scripted);
  await page.getByTestId('model-add').click();
  const row = page.getByTestId('model-row').filter({ hasText: 'R1 Scripted Tiny' });
  await row.waitFor();
  assert.match(await row.innerText(), /llama/i);
  await row.getByTestId('model-load').click();
  await page.locator('[data-testid="engine-status"][data-status="ready"]').first().waitFor({ timeout: 60_000 });
  await shot('02-models');
});

test('chat: the reasoning folds above the streamed answer', async () => {
  await page.getByTestId('nav-chat').click();
  await page.getByTestId('new-chat').click();
  // Record every state of the answer while it streams.
  await page.evaluate(() => {
    const w = window as unknown as { answerStates: string[] };
    w.answerStates = [];
    new MutationObserver(() => {
      const a = document.querySelector('[data-testid="message-assistant"] [data-testid="answer"]');
      const t = a?.textContent ?? '';
      if (t && w.answerStates.at(-1) !== t) w.answerStates.push(t);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const composer = page.getByTestId('composer');
  await composer.fill('Hello! What is 2 + 2?');
  await composer.press('Enter');
  const answer = page.getByTestId('message-assistant').last();
  await answer.locator('[data-status="done"], [data-testid="regenerate"]').first().waitFor({ timeout: 60_000 });
  await page.getByTestId('thinking-summary').first().waitFor();
  const summary = await page.getByTestId('thinking-summary').first().innerText();
  assert.match(summary, /Thought for \d+(\.\d+)? ?s · \d+ tokens/);
  const answerText = await answer.getByTestId('answer').innerText();
  assert.match(answerText, /Hello! The answer is 4, since/);
  assert.equal(await answer.locator('strong').first().innerText(), '4', 'markdown bold');
  assert.ok((await answer.locator('.katex').count()) > 0, 'KaTeX rendered the math');
  // The reasoning is folded: its text is not shown until the block is opened.
  assert.ok(!(await answer.getByTestId('answer').innerText()).includes('Someone greets me'));
  const states = await page.evaluate(() => (window as unknown as { answerStates: string[] }).answerStates);
  assert.ok(states.length >= 4, `the answer streamed in ${states.length} visible steps`);
  await shot('03-answer');
  await page.getByTestId('thinking-summary').first().click();
  await page.getByText(SCRIPT_REASONING.slice(0, 30)).first().waitFor();
  await shot('04-reasoning-open');
  // The conversation got its title from the first message.
  await page.getByTestId('conversation').filter({ hasText: 'Hello! What is 2 + 2?' }).first().waitFor();
});

test('regenerate: a second answer, the first kept as a branch', async () => {
  await page.getByTestId('regenerate').last().click();
  await page.getByTestId('branch-label').filter({ hasText: '2/2' }).first().waitFor({ timeout: 60_000 });
  await page.getByTestId('message-assistant').last().locator('[data-testid="regenerate"]').waitFor({ timeout: 60_000 });
  await page.getByTestId('branch-prev').first().click();
  await page.getByTestId('branch-label').filter({ hasText: '1/2' }).first().waitFor();
  await shot('05-branches');
});

test('stop: Esc ends a long answer and keeps what was written', async () => {
  const rambler = app.library.add(join(root, 'tests/fixtures/generated/llama-tiny-f32.gguf'));
  app.bus.emit('models.changed', { models: app.library.list() });
  await page.getByTestId('new-chat').click();
  await page.getByTestId('model-picker').selectOption(String(rambler.id));
  const composer = page.getByTestId('composer');
  await composer.fill('Tell me a very long story');
  await composer.press('Enter');
  await page.getByTestId('stop').waitFor({ timeout: 60_000 });
  // Let some text arrive, then stop with the keyboard.
  await page.waitForFunction(() => (document.querySelector('[data-testid="message-assistant"]')?.textContent ?? '').length > 20, null, { timeout: 60_000 });
  await page.keyboard.press('Escape');
  const stopped = page.locator('[data-testid="message-assistant"][data-status="stopped"]');
  await stopped.waitFor({ timeout: 30_000 });
  assert.match(await stopped.innerText(), /Stopped/);
  await shot('06-stopped');
});

test('reload: the conversations and their answers are intact', async () => {
  await page.reload();
  const conv = page.getByTestId('conversation').filter({ hasText: 'Hello! What is 2 + 2?' }).first();
  await conv.waitFor();
  await conv.click();
  await page.getByTestId('message-user').filter({ hasText: 'Hello! What is 2 + 2?' }).waitFor();
  const answer = page.getByTestId('message-assistant').last();
  assert.match(await answer.getByTestId('answer').innerText(), /The answer is 4/);
  assert.match(await page.getByTestId('thinking-summary').first().innerText(), /Thought for/);
  await page.getByTestId('branch-label').first().waitFor();
  await shot('07-after-reload');
});
