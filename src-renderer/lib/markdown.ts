// Markdown for answers and reasoning: marked (GFM) with KaTeX for $…$, $$…$$, \(…\), \[…\], and
// highlight.js for fenced code, sanitized with DOMPurify. Called on every streamed delta, so it
// must never throw on half-written input, and it renders by top-level block with a cache: while
// an answer streams only its last block changes, and only that block is rendered again.
import { Marked, type Tokens, type TokenizerAndRendererExtension } from 'marked';
import katex from 'katex';
import hljs from 'highlight.js/lib/common';
import DOMPurify from 'dompurify';

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

function renderMath(tex: string, displayMode: boolean): string {
  try {
    return katex.renderToString(tex.trim(), { displayMode, throwOnError: false, strict: 'ignore', output: 'htmlAndMathml' });
  } catch {
    // throwOnError:false covers parse errors; anything else still shows the source.
    return `<code class="math-error">${escapeHtml(tex)}</code>`;
  }
}

interface MathToken extends Tokens.Generic {
  type: 'math';
  raw: string;
  tex: string;
  display: boolean;
}

// Block math on lines of its own: $$ … $$ or \[ … \], possibly over several lines.
const blockMathRe = /^ {0,3}(?:\$\$([\s\S]+?)\$\$|\\\[([\s\S]+?)\\\])[^\S\n]*(?:\n|$)/;
// Inline math. A single $ opens only before a non-space and closes only after a non-space, and
// not before a digit, so that prices ("$5 and $10") stay text.
const inlineMathRes: Array<[RegExp, boolean]> = [
  [/^\$\$([\s\S]+?)\$\$/, true],
  [/^\\\[([\s\S]+?)\\\]/, true],
  [/^\\\(([\s\S]+?)\\\)/, false],
  [/^\$(?!\s)((?:\\.|[^\\$\n])+?)(?<!\s)\$(?!\d)/, false],
];

const mathExtensions: TokenizerAndRendererExtension[] = [
  {
    name: 'math',
    level: 'block',
    tokenizer(src) {
      const m = blockMathRe.exec(src);
      if (!m) return undefined;
      return { type: 'math', raw: m[0], tex: m[1] ?? m[2] ?? '', display: true } satisfies MathToken;
    },
    renderer(token) {
      return `<div class="math-block">${renderMath((token as MathToken).tex, true)}</div>\n`;
    },
  },
  {
    name: 'inlineMath',
    level: 'inline',
    // An escaped dollar is reported too, so that the escape rule (not the text rule) consumes it.
    start: (src) => {
      const i = src.search(/\\?\$|\\[([]/);
      return i < 0 ? undefined : i;
    },
    tokenizer(src) {
      for (const [re, display] of inlineMathRes) {
        const m = re.exec(src);
        if (m) return { type: 'inlineMath', raw: m[0], tex: m[1] ?? '', display } as Tokens.Generic;
      }
      return undefined;
    },
    renderer(token) {
      return renderMath((token as MathToken).tex, (token as MathToken).display);
    },
  },
];

function codeBlock(text: string, lang: string | undefined): string {
  const language = (lang ?? '').trim().split(/\s+/)[0]?.toLowerCase() ?? '';
  if (language === 'math') return `<div class="math-block">${renderMath(text, true)}</div>\n`;
  let body = escapeHtml(text);
  if (language && hljs.getLanguage(language)) {
    try {
      body = hljs.highlight(text, { language, ignoreIllegals: true }).value;
    } catch {
      // Plain text is a fine fallback for a grammar that trips on a half-written block.
    }
  }
  return (
    `<div class="code-block"><div class="code-head"><span class="code-lang">${escapeHtml(language || 'text')}</span>` +
    `<button type="button" class="copy-code" data-copy-code data-testid="copy-code">Copy</button></div>` +
    `<pre><code class="hljs">${body}</code></pre></div>\n`
  );
}

const safeHref = /^(?:https?:|mailto:|#)/i;

function createMarked(): Marked {
  return new Marked({
    gfm: true,
    breaks: false,
    extensions: mathExtensions,
    renderer: {
      code: ({ text, lang }) => codeBlock(text, lang),
      // Models write HTML by accident far more often than on purpose: show it as text.
      html: ({ text }) => escapeHtml(text),
      link({ href, title, tokens }) {
        const text = this.parser.parseInline(tokens);
        if (!safeHref.test(href)) return text;
        const t = title ? ` title="${escapeHtml(title)}"` : '';
        return `<a href="${escapeHtml(href)}"${t} target="_blank" rel="noopener noreferrer">${text}</a>`;
      },
      // Remote images cannot load offline (and the CSP forbids them): show a link instead.
      image({ href, text }) {
        if (!safeHref.test(href)) return escapeHtml(text);
        return `<a href="${escapeHtml(href)}" target="_blank" rel="noopener noreferrer">${escapeHtml(text || href)}</a>`;
      },
    },
  });
}

const md = createMarked();

/** Markdown to HTML, unsanitized; never throws (falls back to the escaped source). */
export function markdownToHtml(src: string): string {
  try {
    return md.parse(src, { async: false });
  } catch {
    return `<p>${escapeHtml(src)}</p>`;
  }
}

export type Sanitizer = (html: string) => string;

/**
 * A renderer that renders block by block and remembers finished blocks: a block's HTML depends
 * only on its source (when the text has no reference-link definitions), so it is cached by it.
 */
export function createRenderer(sanitize: Sanitizer, cacheSize = 2000): (src: string) => string {
  const cache = new Map<string, string>();
  const remember = (raw: string, html: string) => {
    if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
    cache.set(raw, html);
  };
  return (src: string) => {
    let tokens;
    try {
      tokens = md.lexer(src);
    } catch {
      return sanitize(`<p>${escapeHtml(src)}</p>`);
    }
    const cacheable = Object.keys(tokens.links).length === 0;
    let html = '';
    for (const token of tokens) {
      const hit = cacheable ? cache.get(token.raw) : undefined;
      if (hit !== undefined) {
        html += hit;
        continue;
      }
      let piece: string;
      try {
        piece = sanitize(md.parser(Object.assign([token], { links: tokens.links })));
      } catch {
        piece = `<p>${escapeHtml(token.raw)}</p>`;
      }
      if (cacheable) remember(token.raw, piece);
      html += piece;
    }
    return html;
  };
}

const purify: Sanitizer = (html) => DOMPurify.sanitize(html, { ADD_ATTR: ['target'], FORBID_TAGS: ['style', 'form'] });

/** Safe HTML for `{@html}`: markdown, math and highlighted code, sanitized. */
export const renderMarkdown = createRenderer(purify);
