import { Ajv, type ValidateFunction } from "ajv"
import { Schema } from "effect"
import type { ErrorDetail } from "./Errors.js"
import { optional } from "./internal/schema.js"
import { JsonValue } from "./Json.js"
import { SignalAction } from "./RunEvent.js"

/** A client's answer to a wait (SPEC §4, `POST /runs/{id}/signal`). */
export const SignalRequest = Schema.Struct({
  action: SignalAction,
  input: optional(JsonValue),
  comment: optional(Schema.String.pipe(Schema.maxLength(10_000)))
})
export type SignalRequest = typeof SignalRequest.Type

// One compiler; schemas (and why a schema is unusable) cached by their JSON text,
// so a hot wait compiles once. `addUsedSchema: false`: a schema's `$id` is not
// registered in the compiler, so two waits may use one `$id` for different schemas.
const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, addUsedSchema: false })
const cache = new Map<string, ValidateFunction | string>()
const CACHE_MAX = 1000

const compile = (schema: object): ValidateFunction | string => {
  const text = JSON.stringify(schema)
  const hit = cache.get(text)
  if (hit !== undefined) return hit
  if (cache.size >= CACHE_MAX) {
    // Ajv keeps every schema object it was given, compiled or not: start both over,
    // or memory grows with every distinct schema.
    cache.clear()
    ajv.removeSchema()
  }
  let compiled: ValidateFunction | string
  try {
    compiled = ajv.compile(schema)
  } catch (e) {
    compiled = e instanceof Error ? e.message : "invalid JSON Schema"
  }
  cache.set(text, compiled)
  return compiled
}

/** Null when `schema` is a usable JSON Schema, else why not. */
export const checkInputSchema = (schema: object): string | null => {
  const fn = compile(schema)
  return typeof fn === "string" ? fn : null
}

/** The problems of `input` against the wait's `input_schema`; empty when it conforms. */
export const validateSignalInput = (schema: object, input: unknown): ReadonlyArray<ErrorDetail> => {
  const fn = compile(schema)
  if (typeof fn === "string") return [{ path: "input_schema", message: fn }]
  if (fn(input)) return []
  return (fn.errors ?? []).map((e) => ({
    path: `input${e.instancePath.replaceAll("/", ".")}`,
    message: e.message ?? "is invalid"
  }))
}
