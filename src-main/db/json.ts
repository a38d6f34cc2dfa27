// Stored JSON read back through a schema: whatever part of a value is missing or invalid (a
// corrupt row, a field added by a later version) takes the default instead of failing the read.
import { z } from 'zod';

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `value` checked against `schema`, object fields one by one; invalid parts become `fallback`'s. */
export function validOr<T>(schema: z.ZodType<T>, fallback: T, value: unknown): T {
  if (schema instanceof z.ZodObject && isPlainObject(value) && isPlainObject(fallback)) {
    const shape = schema.shape as Record<string, z.ZodType>;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(shape)) out[key] = validOr(shape[key], fallback[key], value[key]);
    value = out;
  }
  const parsed = schema.safeParse(value);
  return parsed.success ? parsed.data : fallback;
}

/** JSON text parsed and checked with validOr; text that is not JSON gives `fallback`. */
export function parseJsonOr<T>(schema: z.ZodType<T>, fallback: T, text: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fallback;
  }
  return validOr(schema, fallback, value);
}
