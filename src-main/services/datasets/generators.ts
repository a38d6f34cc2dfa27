// Built-in problem generators, so that a user can train offline from the first minute. Both are
// seeded and deterministic: the same options give the same items, in the same order.
//
// arithmetic: word problems from templates, one step (difficulty 1), two (2) or three (3), with
// + − × ÷ and integer answers (a division is built from its quotient, so it is always exact).
// countdown: reach a target with given numbers, each used at most once, with + − × ÷. The numbers
// are drawn first, then a random expression over some of them, evaluated in exact rational
// arithmetic, gives the target: every item is solvable. The reference is what the countdown
// grader checks against, {"numbers": [...], "target": N} as JSON; that expression is the solution.
import type { Database } from '../../db/index.ts';
import { createDataset, insertItems, type Dataset, type NewItem } from '../../db/datasets.ts';
import { seededRng, type Rng } from './random.ts';

export type Difficulty = 1 | 2 | 3;

// ---------------------------------------------------------------------------------------------
// Arithmetic word problems

export interface ArithmeticOptions {
  count: number;
  seed: number;
  /** The levels items are drawn from, evenly; all three by default. */
  difficulties?: readonly Difficulty[];
}

interface Problem {
  template: string;
  prompt: string;
  /** The worked steps, one equation a line. */
  steps: string[];
  expression: string;
  answer: number;
}

const names = ['Ava', 'Ben', 'Chloe', 'Diego', 'Emma', 'Farah', 'Hiro', 'Ines', 'Jonas', 'Lena', 'Mateo', 'Noor', 'Omar', 'Priya', 'Sam', 'Yuki'];
const things = [
  { item: 'apples', container: 'basket' },
  { item: 'marbles', container: 'jar' },
  { item: 'pencils', container: 'box' },
  { item: 'stickers', container: 'sheet' },
  { item: 'cookies', container: 'tray' },
  { item: 'books', container: 'shelf' },
  { item: 'eggs', container: 'carton' },
  { item: 'cards', container: 'pack' },
];
const plural = (container: string) => (container.endsWith('x') || container.endsWith('sh') ? `${container}es` : container.endsWith('f') ? `${container.slice(0, -1)}ves` : `${container}s`);

/** Number ranges per level: addends, factors, divisors. */
const ranges: Record<Difficulty, { add: number; factor: number; divisor: number }> = {
  1: { add: 20, factor: 10, divisor: 10 },
  2: { add: 100, factor: 12, divisor: 12 },
  3: { add: 1000, factor: 25, divisor: 20 },
};

type Template = (rng: Rng, d: Difficulty) => Problem;

function cast(rng: Rng) {
  const name = rng.pick(names);
  let friend = rng.pick(names);
  while (friend === name) friend = rng.pick(names);
  return { name, friend, ...rng.pick(things) };
}

const oneStep: Record<string, Template> = {
  add(rng, d) {
    const { name, item } = cast(rng);
    const a = rng.int(2, ranges[d].add);
    const b = rng.int(2, ranges[d].add);
    return {
      template: 'add',
      prompt: `${name} has ${a} ${item}. ${name} finds ${b} more. How many ${item} does ${name} have now?`,
      steps: [`${a} + ${b} = ${a + b}`],
      expression: `${a} + ${b}`,
      answer: a + b,
    };
  },
  subtract(rng, d) {
    const { name, friend, item } = cast(rng);
    const a = rng.int(3, ranges[d].add);
    const b = rng.int(1, a - 1);
    return {
      template: 'subtract',
      prompt: `${name} had ${a} ${item} and gave ${b} of them to ${friend}. How many ${item} does ${name} have left?`,
      steps: [`${a} - ${b} = ${a - b}`],
      expression: `${a} - ${b}`,
      answer: a - b,
    };
  },
  multiply(rng, d) {
    const { item, container } = cast(rng);
    const a = rng.int(2, ranges[d].factor);
    const b = rng.int(2, ranges[d].factor);
    return {
      template: 'multiply',
      prompt: `A ${container} holds ${b} ${item}. How many ${item} are there in ${a} ${plural(container)}?`,
      steps: [`${a} * ${b} = ${a * b}`],
      expression: `${a} * ${b}`,
      answer: a * b,
    };
  },
  divide(rng, d) {
    const { name, item } = cast(rng);
    const b = rng.int(2, ranges[d].divisor);
    const q = rng.int(2, ranges[d].factor);
    return {
      template: 'divide',
      prompt: `${name} shares ${q * b} ${item} equally among ${b} friends. How many ${item} does each friend get?`,
      steps: [`${q * b} / ${b} = ${q}`],
      expression: `${q * b} / ${b}`,
      answer: q,
    };
  },
};

const twoStep: Record<string, Template> = {
  multiplySubtract(rng, d) {
    const { name, friend, item, container } = cast(rng);
    const a = rng.int(2, ranges[d].factor);
    const b = rng.int(2, ranges[d].factor);
    const c = rng.int(1, a * b - 1);
    return {
      template: 'multiplySubtract',
      prompt: `${name} buys ${a} ${plural(container)} with ${b} ${item} in each and gives ${c} ${item} to ${friend}. How many ${item} does ${name} have left?`,
      steps: [`${a} * ${b} = ${a * b}`, `${a * b} - ${c} = ${a * b - c}`],
      expression: `${a} * ${b} - ${c}`,
      answer: a * b - c,
    };
  },
  addDivide(rng, d) {
    const { name, friend, item } = cast(rng);
    const k = rng.int(2, ranges[d].divisor);
    const q = rng.int(2, ranges[d].factor);
    const a = rng.int(1, q * k - 1);
    const b = q * k - a;
    return {
      template: 'addDivide',
      prompt: `${name} has ${a} ${item} and ${friend} has ${b}. They put them together and share them equally among ${k} children. How many ${item} does each child get?`,
      steps: [`${a} + ${b} = ${q * k}`, `${q * k} / ${k} = ${q}`],
      expression: `(${a} + ${b}) / ${k}`,
      answer: q,
    };
  },
  subtractMultiply(rng, d) {
    const { name, item, container } = cast(rng);
    const a = rng.int(4, ranges[d].factor + 2);
    const b = rng.int(2, a - 1);
    const c = rng.int(2, ranges[d].factor);
    return {
      template: 'subtractMultiply',
      prompt: `Each ${container} has ${a} ${item}. ${name} takes ${b} ${item} out of every ${container}. How many ${item} are left in ${c} ${plural(container)}?`,
      steps: [`${a} - ${b} = ${a - b}`, `${a - b} * ${c} = ${(a - b) * c}`],
      expression: `(${a} - ${b}) * ${c}`,
      answer: (a - b) * c,
    };
  },
};

const threeStep: Record<string, Template> = {
  multiplyAddDivide(rng, d) {
    const { name, item, container } = cast(rng);
    const k = rng.int(2, ranges[d].divisor);
    const a = rng.int(2, ranges[d].factor);
    const b = rng.int(2, ranges[d].factor);
    // c makes a·b + c a multiple of k.
    const c = k - ((a * b) % k) + k * rng.int(0, 3);
    const total = a * b + c;
    return {
      template: 'multiplyAddDivide',
      prompt: `${name} buys ${a} ${plural(container)} with ${b} ${item} in each, finds ${c} more ${item}, and then shares all of them equally among ${k} friends. How many ${item} does each friend get?`,
      steps: [`${a} * ${b} = ${a * b}`, `${a * b} + ${c} = ${total}`, `${total} / ${k} = ${total / k}`],
      expression: `(${a} * ${b} + ${c}) / ${k}`,
      answer: total / k,
    };
  },
  earnSpendSplit(rng, d) {
    const { name } = cast(rng);
    const a = rng.int(5, ranges[d].factor * 4);
    const b = rng.int(2, ranges[d].factor);
    const earned = a * b;
    // What is left is k·q, below what was earned, so something was spent.
    const k = rng.int(2, Math.min(ranges[d].divisor, earned - 1));
    const q = rng.int(1, Math.floor((earned - 1) / k));
    const c = earned - k * q;
    const left = earned - c;
    return {
      template: 'earnSpendSplit',
      prompt: `${name} earns $${a} a day for ${b} days, spends $${c}, and splits what is left equally into ${k} envelopes. How many dollars go in each envelope?`,
      steps: [`${a} * ${b} = ${earned}`, `${earned} - ${c} = ${left}`, `${left} / ${k} = ${left / k}`],
      expression: `(${a} * ${b} - ${c}) / ${k}`,
      answer: left / k,
    };
  },
  rowsOfChairs(rng, d) {
    const a = rng.int(3, ranges[d].factor);
    const b = rng.int(3, ranges[d].factor);
    const c = rng.int(1, a * b - 1);
    const e = rng.int(1, ranges[d].factor);
    const answer = a * b - c + e * b;
    return {
      template: 'rowsOfChairs',
      prompt: `A hall has ${a} rows of ${b} chairs. ${c} chairs are taken away, and then ${e} more rows of ${b} chairs are added. How many chairs are in the hall now?`,
      steps: [`${a} * ${b} = ${a * b}`, `${a * b} - ${c} = ${a * b - c}`, `${e} * ${b} = ${e * b}`, `${a * b - c} + ${e * b} = ${answer}`],
      expression: `${a} * ${b} - ${c} + ${e} * ${b}`,
      answer,
    };
  },
};

const templatesByLevel: Record<Difficulty, Template[]> = {
  1: Object.values(oneStep),
  2: Object.values(twoStep),
  3: Object.values(threeStep),
};

function checkCount(count: number): void {
  if (!Number.isInteger(count) || count < 0 || count > 10_000_000) throw new Error(`a count is a whole number up to ten million, not ${count}`);
}

export function generateArithmetic(options: ArithmeticOptions): NewItem[] {
  checkCount(options.count);
  const levels = options.difficulties ?? [1, 2, 3];
  if (levels.length === 0 || levels.some((l) => ![1, 2, 3].includes(l))) throw new Error(`difficulties are 1, 2 or 3, not ${levels.join(', ')}`);
  const rng = seededRng(options.seed);
  const items: NewItem[] = [];
  for (let n = 0; n < options.count; n++) {
    const difficulty = rng.pick(levels);
    const p = rng.pick(templatesByLevel[difficulty])(rng, difficulty);
    items.push({
      prompt: p.prompt,
      reference: String(p.answer),
      solution: `${p.steps.join('\n')}\nThe answer is ${p.answer}.`,
      tags: ['arithmetic', `difficulty-${difficulty}`],
      meta: { task: 'arithmetic', template: p.template, difficulty, expression: p.expression },
    });
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Countdown

export interface CountdownOptions {
  count: number;
  seed: number;
  /** How many numbers each problem gives, 2 to 6; 4 by default. */
  numbers?: number;
  /** The largest number given; 100 by default. */
  maxNumber?: number;
  /** Targets are whole numbers from 1 to this; 1000 by default. */
  maxTarget?: number;
}

/** An exact fraction num/den, den > 0, in lowest terms. */
interface Rational {
  num: bigint;
  den: bigint;
}

const gcd = (a: bigint, b: bigint): bigint => {
  a = a < 0n ? -a : a;
  b = b < 0n ? -b : b;
  while (b) [a, b] = [b, a % b];
  return a;
};

function rational(num: bigint, den: bigint): Rational {
  if (den === 0n) throw new Error('division by zero');
  if (den < 0n) [num, den] = [-num, -den];
  const g = gcd(num, den) || 1n;
  return { num: num / g, den: den / g };
}

type Op = '+' | '-' | '*' | '/';

function apply(op: Op, a: Rational, b: Rational): Rational {
  if (op === '+') return rational(a.num * b.den + b.num * a.den, a.den * b.den);
  if (op === '-') return rational(a.num * b.den - b.num * a.den, a.den * b.den);
  if (op === '*') return rational(a.num * b.num, a.den * b.den);
  return rational(a.num * b.den, a.den * b.num);
}

/** An expression with its exact value; `prec` is 3 for a number, 2 for * and /, 1 for + and -. */
interface Expr {
  value: Rational;
  text: string;
  prec: number;
}

/** a op b printed with the parentheses that left-to-right precedence parsing needs. */
function combine(op: Op, a: Expr, b: Expr): Expr {
  const prec = op === '+' || op === '-' ? 1 : 2;
  // The right operand needs parentheses when it binds no tighter than a non-commutative op.
  const rightTight = op === '-' || op === '/' ? b.prec > prec : b.prec >= prec;
  const left = a.prec >= prec ? a.text : `(${a.text})`;
  const right = rightTight ? b.text : `(${b.text})`;
  return { value: apply(op, a.value, b.value), text: `${left} ${op} ${right}`, prec };
}

const compare = (a: Rational, b: Rational) => (a.num * b.den < b.num * a.den ? -1 : a.num * b.den > b.num * a.den ? 1 : 0);

/** Combines random pairs of the pool until one expression is left; values stay positive. */
function randomExpression(rng: Rng, numbers: readonly number[]): Expr {
  const pool: Expr[] = numbers.map((n) => ({ value: rational(BigInt(n), 1n), text: String(n), prec: 3 }));
  while (pool.length > 1) {
    let a = pool.splice(rng.int(0, pool.length - 1), 1)[0];
    let b = pool.splice(rng.int(0, pool.length - 1), 1)[0];
    let op = rng.pick<Op>(['+', '-', '*', '/']);
    if (op === '-' || op === '/') {
      const c = compare(a.value, b.value);
      if (c < 0) [a, b] = [b, a];
      else if (c === 0) op = op === '-' ? '+' : '*';
    }
    pool.push(combine(op, a, b));
  }
  return pool[0];
}

export function generateCountdown(options: CountdownOptions): NewItem[] {
  checkCount(options.count);
  const size = options.numbers ?? 4;
  const maxNumber = options.maxNumber ?? 100;
  const maxTarget = options.maxTarget ?? 1000;
  if (!Number.isInteger(size) || size < 2 || size > 6) throw new Error(`a countdown gives 2 to 6 numbers, not ${size}`);
  if (!Number.isInteger(maxNumber) || maxNumber < 2) throw new Error(`the largest number is a whole number from 2, not ${maxNumber}`);
  if (!Number.isInteger(maxTarget) || maxTarget < 10) throw new Error(`the largest target is a whole number from 10, not ${maxTarget}`);
  const rng = seededRng(options.seed);
  const items: NewItem[] = [];
  while (items.length < options.count) {
    const numbers = Array.from({ length: size }, () => rng.int(1, maxNumber));
    // Most problems use every number; some leave one out.
    const used = rng.shuffle([...numbers]).slice(0, rng.next() < 0.75 || size === 2 ? size : size - 1);
    // A few tries per set of numbers for a target in range that is not simply one of them.
    for (let attempt = 0; attempt < 20; attempt++) {
      const e = randomExpression(rng, used);
      const { num, den } = e.value;
      if (den !== 1n || num < 1n || num > BigInt(maxTarget) || numbers.includes(Number(num))) continue;
      const target = Number(num);
      items.push({
        prompt: `Using the numbers [${numbers.join(', ')}], write an expression that equals ${target}. You may use +, -, * and /, with parentheses, and each number at most once.`,
        reference: JSON.stringify({ numbers, target }),
        solution: `${e.text} = ${target}`,
        tags: ['countdown'],
        meta: { task: 'countdown', numbers, target, expression: e.text },
      });
      break;
    }
  }
  return items;
}

// ---------------------------------------------------------------------------------------------
// Stored datasets

export type GeneratorSpec = ({ generator: 'arithmetic' } & ArithmeticOptions) | ({ generator: 'countdown' } & CountdownOptions);

/** `generator:<name>?<options>`, the source a generated dataset records (enough to make it again). */
export function generatorSource(spec: GeneratorSpec): string {
  const { generator, ...options } = spec;
  const query = Object.entries(options)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(',') : String(v)}`)
    .join('&');
  return `generator:${generator}?${query}`;
}

/** Generates items and stores them as a new dataset (kind math), in one transaction. */
export function generateDataset(db: Database, spec: GeneratorSpec, name?: string, now = Date.now()): Dataset {
  const items = spec.generator === 'arithmetic' ? generateArithmetic(spec) : generateCountdown(spec);
  const description =
    spec.generator === 'arithmetic'
      ? 'Arithmetic word problems with whole-number answers'
      : 'Countdown: reach the target with the given numbers, each used at most once';
  return db.transaction(() => {
    const d = createDataset(db, { name: name ?? `${spec.generator}-${spec.seed}`, description, kind: 'math', source: generatorSource(spec) }, now);
    insertItems(db, d.id, items, now);
    return d;
  })();
}
