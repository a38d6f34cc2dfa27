/**
 * A small, safe arithmetic expression language: a tokenizer, a recursive-descent parser to an AST, and two evaluators
 * (floating point with variables, exact rationals with bigint). Never eval, never new Function.
 *
 * Grammar (loosest to tightest):
 *   expr  := term (('+' | '-') term)*
 *   term  := unary (('*' | '/') unary | <implicit> unary)*      implicit: "2x", "3pi", "2(1+x)", "x y"
 *   unary := ('-' | '+') unary | power
 *   power := atom ('^' unary)?                                   right-associative: 2^3^2 = 2^9
 *   atom  := number | constant | variable | func '(' expr (',' expr)* ')' | '(' expr ')'
 */

export type Node =
  | { t: 'num'; text: string }
  | { t: 'const'; name: 'pi' | 'e' | 'inf' }
  | { t: 'var'; name: string }
  | { t: 'neg'; a: Node }
  | { t: 'bin'; op: '+' | '-' | '*' | '/' | '^'; a: Node; b: Node; implicit?: boolean }
  | { t: 'fn'; name: string; args: Node[] };

export interface ParseOptions {
  /** Single-letter variables (x, y, n...). Default true. */
  variables?: boolean;
  /** sqrt, root, sin, cos, tan, ln, log, exp, abs. Default true. */
  functions?: boolean;
  /** pi, e, inf. Default true. */
  constants?: boolean;
  /** Juxtaposition as multiplication ("2x", "2(3)"). Default true. */
  implicitMultiplication?: boolean;
  /** The '^' operator. Default true. */
  power?: boolean;
  /** Unary minus and plus. Default true. */
  unary?: boolean;
}

export type ParseResult = { ok: true; node: Node } | { ok: false; error: string };

type Tok =
  | { k: 'num'; text: string; at: number }
  | { k: 'id'; text: string; at: number }
  | { k: 'op'; text: string; at: number };

const FUNCTIONS = new Set(['sqrt', 'root', 'sin', 'cos', 'tan', 'ln', 'log', 'exp', 'abs']);
const CONSTANTS = new Set(['pi', 'e', 'inf', 'infty', 'infinity']);
const OP_ALIASES: Record<string, string> = { '×': '*', '·': '*', '⋅': '*', '∗': '*', '÷': '/', '−': '-', '–': '-', '[': '(', ']': ')' };

function tokenize(src: string): Tok[] | string {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) { i++; continue; }
    const num = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/.exec(src.slice(i));
    if (num) { out.push({ k: 'num', text: num[0], at: i }); i += num[0].length; continue; }
    if (c === 'π') { out.push({ k: 'id', text: 'pi', at: i }); i++; continue; }
    if (c === '∞') { out.push({ k: 'id', text: 'inf', at: i }); i++; continue; }
    const id = /^[A-Za-z]+/.exec(src.slice(i));
    if (id) {
      // A run of letters is one known word (sqrt, pi...) or one single-letter variable; anything else ("xy", "yes") is not an expression.
      const w = id[0];
      if (!FUNCTIONS.has(w) && !CONSTANTS.has(w) && w.length !== 1) return `unknown word "${w}"`;
      out.push({ k: 'id', text: w, at: i });
      i += id[0].length;
      continue;
    }
    const op = OP_ALIASES[c] ?? c;
    if ('+-*/^(),'.includes(op)) { out.push({ k: 'op', text: op, at: i }); i++; continue; }
    return `unexpected character "${c}"`;
  }
  return out;
}

class Parser {
  private i = 0;
  constructor(private readonly toks: Tok[], private readonly o: Required<ParseOptions>) {}

  parse(): Node {
    if (this.toks.length === 0) throw new Error('empty expression');
    const n = this.expr();
    if (this.i < this.toks.length) throw new Error(`unexpected "${this.toks[this.i].text}"`);
    return n;
  }

  private peek(): Tok | undefined { return this.toks[this.i]; }
  private isOp(text: string): boolean { const t = this.peek(); return !!t && t.k === 'op' && t.text === text; }
  private expect(text: string): void {
    if (!this.isOp(text)) throw new Error(`expected "${text}"`);
    this.i++;
  }

  private expr(): Node {
    let a = this.term();
    while (this.isOp('+') || this.isOp('-')) {
      const op = this.toks[this.i++].text as '+' | '-';
      a = { t: 'bin', op, a, b: this.term() };
    }
    return a;
  }

  /** Whether an implicit product can continue here: never before a bare number ("2 3", "x2" are not products). */
  private startsAtom(): boolean {
    const t = this.peek();
    if (!t) return false;
    return t.k === 'id' || (t.k === 'op' && t.text === '(');
  }

  private term(): Node {
    let a = this.unary();
    for (;;) {
      if (this.isOp('*') || this.isOp('/')) {
        const op = this.toks[this.i++].text as '*' | '/';
        a = { t: 'bin', op, a, b: this.unary() };
      } else if (this.o.implicitMultiplication && this.startsAtom()) {
        a = { t: 'bin', op: '*', a, b: this.power(), implicit: true };
      } else return a;
    }
  }

  private unary(): Node {
    if (this.isOp('-') || this.isOp('+')) {
      if (!this.o.unary) throw new Error('unary sign not allowed');
      const neg = this.toks[this.i++].text === '-';
      const a = this.unary();
      return neg ? { t: 'neg', a } : a;
    }
    return this.power();
  }

  private power(): Node {
    const a = this.atom();
    if (this.isOp('^')) {
      if (!this.o.power) throw new Error('"^" not allowed');
      this.i++;
      return { t: 'bin', op: '^', a, b: this.unary() };
    }
    return a;
  }

  private atom(): Node {
    const t = this.peek();
    if (!t) throw new Error('unexpected end');
    if (t.k === 'num') { this.i++; return { t: 'num', text: t.text }; }
    if (t.k === 'op' && t.text === '(') {
      this.i++;
      const n = this.expr();
      this.expect(')');
      return n;
    }
    if (t.k === 'id') {
      this.i++;
      if (FUNCTIONS.has(t.text)) {
        if (!this.o.functions) throw new Error(`function "${t.text}" not allowed`);
        const args: Node[] = [];
        if (this.isOp('(')) {
          this.i++;
          args.push(this.expr());
          while (this.isOp(',')) { this.i++; args.push(this.expr()); }
          this.expect(')');
        } else {
          args.push(this.power()); // "sqrt 2", "ln x"
        }
        const arity = t.text === 'root' || t.text === 'log' ? [1, 2] : [1, 1];
        if (args.length < arity[0] || args.length > arity[1]) throw new Error(`${t.text} takes ${arity.join('..')} arguments`);
        return { t: 'fn', name: t.text, args };
      }
      if (CONSTANTS.has(t.text)) {
        if (!this.o.constants) throw new Error(`constant "${t.text}" not allowed`);
        return { t: 'const', name: t.text === 'pi' ? 'pi' : t.text === 'e' ? 'e' : 'inf' };
      }
      if (!this.o.variables) throw new Error(`variable "${t.text}" not allowed`);
      return { t: 'var', name: t.text };
    }
    throw new Error(`unexpected "${t.text}"`);
  }
}

export function parseExpression(src: string, options: ParseOptions = {}): ParseResult {
  const o: Required<ParseOptions> = {
    variables: true, functions: true, constants: true, implicitMultiplication: true, power: true, unary: true, ...options,
  };
  if (src.length > 2000) return { ok: false, error: 'expression too long' };
  const toks = tokenize(src);
  if (typeof toks === 'string') return { ok: false, error: toks };
  try {
    return { ok: true, node: new Parser(toks, o).parse() };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

export function variablesOf(n: Node, into = new Set<string>()): Set<string> {
  if (n.t === 'var') into.add(n.name);
  else if (n.t === 'neg') variablesOf(n.a, into);
  else if (n.t === 'bin') { variablesOf(n.a, into); variablesOf(n.b, into); }
  else if (n.t === 'fn') for (const a of n.args) variablesOf(a, into);
  return into;
}

/** Every number literal in the expression, left to right. */
export function numbersOf(n: Node, into: string[] = []): string[] {
  if (n.t === 'num') into.push(n.text);
  else if (n.t === 'neg') numbersOf(n.a, into);
  else if (n.t === 'bin') { numbersOf(n.a, into); numbersOf(n.b, into); }
  else if (n.t === 'fn') for (const a of n.args) numbersOf(a, into);
  return into;
}

/** Floating-point value; variables from env (missing ones are NaN). */
export function evalFloat(n: Node, env: Record<string, number> = {}): number {
  switch (n.t) {
    case 'num': return Number(n.text);
    case 'const': return n.name === 'pi' ? Math.PI : n.name === 'e' ? Math.E : Infinity;
    case 'var': return env[n.name] ?? NaN;
    case 'neg': return -evalFloat(n.a, env);
    case 'bin': {
      const a = evalFloat(n.a, env);
      const b = evalFloat(n.b, env);
      switch (n.op) {
        case '+': return a + b;
        case '-': return a - b;
        case '*': return a * b;
        case '/': return a / b;
        case '^': return Math.pow(a, b);
      }
    }
    // falls through (unreachable: every op returns)
    case 'fn': {
      const x = evalFloat(n.args[0], env);
      switch (n.name) {
        case 'sqrt': return Math.sqrt(x);
        case 'root': {
          const k = n.args.length > 1 ? evalFloat(n.args[1], env) : 2;
          return x < 0 && Number.isInteger(k) && k % 2 === 1 ? -Math.pow(-x, 1 / k) : Math.pow(x, 1 / k);
        }
        case 'sin': return Math.sin(x);
        case 'cos': return Math.cos(x);
        case 'tan': return Math.tan(x);
        case 'ln': return Math.log(x);
        case 'log': return n.args.length > 1 ? Math.log(evalFloat(n.args[1], env)) / Math.log(x) : Math.log10(x);
        case 'exp': return Math.exp(x);
        case 'abs': return Math.abs(x);
      }
      return NaN;
    }
  }
}

/** An exact rational number: n / d with d > 0 and gcd(n, d) = 1. */
export class Rational {
  readonly n: bigint;
  readonly d: bigint;
  constructor(n: bigint, d: bigint = 1n) {
    if (d === 0n) throw new RangeError('division by zero');
    if (d < 0n) { n = -n; d = -d; }
    const g = gcd(n < 0n ? -n : n, d);
    this.n = g > 1n ? n / g : n;
    this.d = g > 1n ? d / g : d;
  }
  static parse(text: string): Rational {
    const m = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(text);
    if (!m) throw new RangeError(`not a number: ${text}`);
    const frac = m[2] ?? '';
    let n = BigInt((m[1] || '0') + frac);
    let d = 10n ** BigInt(frac.length);
    const exp = m[3] ? Number(m[3]) : 0;
    if (Math.abs(exp) > 400) throw new RangeError('exponent too large');
    if (exp > 0) n *= 10n ** BigInt(exp);
    else if (exp < 0) d *= 10n ** BigInt(-exp);
    return new Rational(n, d);
  }
  add(o: Rational): Rational { return new Rational(this.n * o.d + o.n * this.d, this.d * o.d); }
  sub(o: Rational): Rational { return new Rational(this.n * o.d - o.n * this.d, this.d * o.d); }
  mul(o: Rational): Rational { return new Rational(this.n * o.n, this.d * o.d); }
  div(o: Rational): Rational {
    if (o.n === 0n) throw new RangeError('division by zero');
    return new Rational(this.n * o.d, this.d * o.n);
  }
  neg(): Rational { return new Rational(-this.n, this.d); }
  equals(o: Rational): boolean { return this.n === o.n && this.d === o.d; }
  isInteger(): boolean { return this.d === 1n; }
  toNumber(): number { return Number(this.n) / Number(this.d); }
  toString(): string { return this.d === 1n ? `${this.n}` : `${this.n}/${this.d}`; }
}

function gcd(a: bigint, b: bigint): bigint {
  while (b !== 0n) [a, b] = [b, a % b];
  return a;
}

/**
 * Exact rational value, or null when the expression is not rational-valued by construction (variables, constants,
 * functions, non-integer powers) or divides by zero.
 */
export function evalRational(n: Node): Rational | null {
  try {
    return evalR(n);
  } catch {
    return null;
  }
}

function evalR(n: Node): Rational {
  switch (n.t) {
    case 'num': return Rational.parse(n.text);
    case 'neg': return evalR(n.a).neg();
    case 'bin': {
      const a = evalR(n.a);
      const b = evalR(n.b);
      switch (n.op) {
        case '+': return a.add(b);
        case '-': return a.sub(b);
        case '*': return a.mul(b);
        case '/': return a.div(b);
        case '^': {
          if (!b.isInteger() || b.n > 64n || b.n < -64n) throw new RangeError('non-integer power');
          let r = new Rational(1n);
          const k = b.n < 0n ? -b.n : b.n;
          for (let i = 0n; i < k; i++) r = r.mul(a);
          return b.n < 0n ? new Rational(1n).div(r) : r;
        }
      }
    }
    // falls through (unreachable)
    default:
      throw new RangeError('not rational');
  }
}
