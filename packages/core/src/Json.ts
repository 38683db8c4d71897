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
