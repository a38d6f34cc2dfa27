// The renderer's markdown: math in all four delimiters, prices left alone, highlighted code with
// a copy button, raw HTML and unsafe links neutralized, half-written input (as it streams) never
// throwing, and the block cache giving the same HTML as a fresh render.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRenderer, markdownToHtml } from '../../src-renderer/lib/markdown.ts';

const katexCount = (html: string) => (html.match(/class="katex"/g) ?? []).length;

test('inline math: $…$ and \\(…\\)', () => {
  const html = markdownToHtml('Euler: $e^{i\\pi}+1=0$ and \\(a_1 + b_2\\) done');
  assert.equal(katexCount(html), 2);
  assert.match(html, /<annotation encoding="application\/x-tex">e\^\{i\\pi\}\+1=0<\/annotation>/);
  assert.doesNotMatch(html, /<em>/, 'underscores inside math are not emphasis');
});

test('display math: $$…$$ and \\[…\\], on their own lines or inside a paragraph', () => {
  for (const src of ['$$\n\\int_0^1 x\\,dx\n$$', '\\[\nx = \\frac{1}{2}\n\\]', 'So\n\\[\n\\boxed{42}\n\\]\nthen']) {
    const html = markdownToHtml(src);
    assert.match(html, /katex-display/, src);
    assert.doesNotMatch(html, /\\\[|\$\$/, `delimiters consumed in ${JSON.stringify(src)}`);
  }
});

test('prices and escaped dollars stay text', () => {
  assert.equal(katexCount(markdownToHtml('It costs $5 and $10 today')), 0);
  assert.equal(markdownToHtml('escaped \\$5 here').trim(), '<p>escaped $5 here</p>');
});

test('math inside code stays code', () => {
  const html = markdownToHtml('Use `$x$` literally');
  assert.equal(katexCount(html), 0);
  assert.match(html, /<code>\$x\$<\/code>/);
});

test('fenced code is highlighted, labelled and has a copy button; unknown languages are escaped', () => {
  const html = markdownToHtml('```python\ndef f():\n    return "<b>"\n```');
  assert.match(html, /<span class="hljs-keyword">def<\/span>/);
  assert.match(html, /<span class="code-lang">python<\/span>/);
  assert.match(html, /data-copy-code/);
  assert.match(html, /&lt;b&gt;/);
  const plain = markdownToHtml('```nosuchlang\n<script>x</script>\n```');
  assert.match(plain, /&lt;script&gt;x&lt;\/script&gt;/);
});

test('raw HTML is shown as text and unsafe links lose their href', () => {
  const html = markdownToHtml('<img src=x onerror=alert(1)> [a](javascript:alert(1)) [b](https://example.org)');
  assert.doesNotMatch(html, /<img/);
  assert.doesNotMatch(html, /javascript:/);
  assert.match(html, /<a href="https:\/\/example.org" target="_blank" rel="noopener noreferrer">b<\/a>/);
});

test('half-written markdown never throws and renders what it can', () => {
  const full = [
    '# Title\n\nSome **bold** and $x^2$ math.\n\n',
    '```js\nconst a = 1;\n```\n\n',
    '| a | b |\n|---|---|\n| 1 | 2 |\n\n',
    '\\[\n\\frac{1}{2}\n\\]\n\n',
    '- item [link](https://example.org)\n',
  ].join('');
  for (let i = 0; i <= full.length; i++) {
    const html = markdownToHtml(full.slice(0, i));
    assert.equal(typeof html, 'string');
  }
  assert.match(markdownToHtml('```python\nprint(1)'), /<pre><code class="hljs">/, 'an unclosed fence is already code');
  assert.match(markdownToHtml('the sum $\\frac{1}{'), /\$\\frac\{1\}\{/, 'unclosed math stays text');
});

test('the block renderer matches a whole render, and reuses finished blocks', () => {
  let calls = 0;
  const render = createRenderer((html) => {
    calls++;
    return html;
  });
  const text = '# A\n\nOne $x$.\n\n```py\nprint(1)\n```\n\nLast line';
  assert.equal(render(text), markdownToHtml(text));
  calls = 0;
  render(text + ' grows');
  assert.equal(calls, 1, 'only the changed last block is rendered again');
});

test('reference links still resolve when rendering block by block', () => {
  const render = createRenderer((html) => html);
  const text = 'See [the docs][d].\n\n[d]: https://example.org/docs';
  assert.match(render(text), /href="https:\/\/example.org\/docs"/);
});
