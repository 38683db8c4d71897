import { Schema } from "effect"

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | ReadonlyArray<JsonValue>
  | { readonly [k: string]: JsonValue }
export type JsonObject = { readonly [k: string]: JsonValue }

/** Nesting deeper than this is refused: it only ever comes from a bug or an attack. */
export const MAX_JSON_DEPTH = 64

const isJsonAt = (value: unknown, depth: number): boolean => {
  if (value === null) return true
  switch (typeof value) {
    case "string":
    case "boolean":
      return true
    case "number":
      return Number.isFinite(value)
    case "object": {
      if (depth >= MAX_JSON_DEPTH) return false
      if (Array.isArray(value)) return value.every((v) => isJsonAt(v, depth + 1))
      const proto = Object.getPrototypeOf(value)
      if (proto !== Object.prototype && proto !== null) return false
      return Object.values(value).every((v) => isJsonAt(v, depth + 1))
    }
    default:
      return false
  }
}

/**
 * Whether objects and arrays in `value` nest more than `maxDepth` deep. Iterative, so a
 * hostile body nested half a million levels (1 MiB of `[`) is measured without
 * exhausting the stack; nothing recursive (schema checks, error formatting) may see one.
 */
export const nestsDeeperThan = (value: unknown, maxDepth: number): boolean => {
  const stack: Array<readonly [unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!
    if (typeof v !== "object" || v === null) continue
    if (depth >= maxDepth) return true
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1])
  }
  return false
}

/** True when `value` survives a JSON round trip unchanged (finite numbers, plain objects, bounded depth). */
export const isJsonValue = (value: unknown): value is JsonValue => isJsonAt(value, 0)

export const JsonValue: Schema.Schema<JsonValue> = Schema.declare(isJsonValue, {
  identifier: "JsonValue",
  description: `a JSON value (finite numbers, plain objects, at most ${MAX_JSON_DEPTH} levels deep)`
})

export const JsonObject: Schema.Schema<JsonObject> = Schema.declare(
  (u: unknown): u is JsonObject => typeof u === "object" && u !== null && !Array.isArray(u) && isJsonValue(u),
  { identifier: "JsonObject", description: "a JSON object" }
)
