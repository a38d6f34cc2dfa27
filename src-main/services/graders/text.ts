/** Text helpers shared by the graders: think blocks, braces, tags. */

/** The part of a completion after the last `</think>`, or the whole completion when there is none. */
export function afterThink(completion: string): string {
  const at = completion.lastIndexOf('</think>');
  return at < 0 ? completion : completion.slice(at + '</think>'.length);
}

/**
 * Read a balanced `{...}` group starting at s[i] === '{'. Escaped braces (`\{`, `\}`) count as text, not as grouping.
 * Returns the inner text and the index just after the closing brace, or null when unbalanced.
 */
export function readBraced(s: string, i: number): { inner: string; end: number } | null {
  if (s[i] !== '{') return null;
  let depth = 0;
  for (let j = i; j < s.length; j++) {
    const c = s[j];
    if (c === '\\') { j++; continue; }
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) return { inner: s.slice(i + 1, j), end: j + 1 };
    }
  }
  return null;
}

/** The content of the last `\boxed{...}` (or `\fbox{...}`, or `\boxed 5`) in s, nested braces handled; null when none. */
export function lastBoxed(s: string): string | null {
  const re = /\\(?:boxed|fbox)\s*/g;
  let found: string | null = null;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const i = m.index + m[0].length;
    if (s[i] === '{') {
      const g = readBraced(s, i);
      if (g) found = g.inner;
    } else if (m[0].endsWith(' ') || /\s/.test(m[0].slice(-1))) {
      const t = /^[^\s$]+/.exec(s.slice(i));
      if (t) found = t[0];
    }
  }
  return found;
}

/** The content of the last `<tag>...</tag>` pair in s (trimmed); null when none. */
export function lastTag(s: string, tag: string): string | null {
  const open = `<${tag}>`;
  const close = `</${tag}>`;
  const end = s.lastIndexOf(close);
  if (end < 0) return null;
  const start = s.lastIndexOf(open, end);
  if (start < 0) return null;
  return s.slice(start + open.length, end).trim();
}

export function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
