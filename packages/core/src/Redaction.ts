import type { JsonValue } from "./Json.js"

/**
 * What is removed from user data before it is stored or sent (SPEC §6).
 * - `keyPattern`: an object key matching it has its whole value replaced;
 * - `valuePatterns`: any substring of a string matching one of them is replaced.
 * Patterns in `valuePatterns` must be global (`g`).
 */
export interface RedactionPolicy {
  readonly keyPattern: RegExp | null
  readonly valuePatterns: ReadonlyArray<RegExp>
  readonly replacement: string
}

export const REDACTED = "[REDACTED]"

export const DEFAULT_REDACTION_POLICY: RedactionPolicy = {
  keyPattern: /secret|password|token|api_?key|authorization/i,
  valuePatterns: [
    // "Bearer <credential>" as in an Authorization header
    /\bBearer\s+[A-Za-z0-9\-._~+/]{8,}=*/gi,
    // a Baton API key "key_<id>:<secret>"
    /\bkey_[A-Za-z0-9]{8,}:[A-Za-z0-9_-]{16,}/g
  ],
  replacement: REDACTED
}

/** A policy that removes nothing, for embedders who redact upstream. */
export const NO_REDACTION: RedactionPolicy = { keyPattern: null, valuePatterns: [], replacement: REDACTED }

export interface Redacted<A> {
  readonly value: A
  readonly redacted: boolean
}

const redactString = (s: string, policy: RedactionPolicy): Redacted<string> => {
  let out = s
  for (const pattern of policy.valuePatterns) {
    pattern.lastIndex = 0
    out = out.replace(pattern, policy.replacement)
  }
  return { value: out, redacted: out !== s }
}

/** Applies the policy to a JSON value; returns the cleaned value and whether anything was removed. */
export const redactJson = <A extends JsonValue>(value: A, policy: RedactionPolicy): Redacted<A> => {
  if (typeof value === "string") return redactString(value, policy) as Redacted<A>
  if (value === null || typeof value !== "object") return { value, redacted: false }
  let redacted = false
  if (Array.isArray(value)) {
    const out = value.map((v: JsonValue) => {
      const r = redactJson(v, policy)
      redacted ||= r.redacted
      return r.value
    })
    return { value: out as unknown as A, redacted }
  }
  // Entries, not assignment: `out["__proto__"] = v` would set the prototype and drop the key.
  const out: Array<[string, JsonValue]> = []
  for (const [k, v] of Object.entries(value as Record<string, JsonValue>)) {
    if (policy.keyPattern?.test(k)) {
      out.push([k, policy.replacement])
      redacted = true
    } else {
      const r = redactJson(v, policy)
      redacted ||= r.redacted
      out.push([k, r.value])
    }
  }
  return { value: Object.fromEntries(out) as A, redacted }
}

/** Redacts several user-supplied parts of one payload, reporting one `redacted` flag. */
export class RedactionScope {
  redacted = false
  constructor(readonly policy: RedactionPolicy) {}
  json<A extends JsonValue>(value: A): A {
    const r = redactJson(value, this.policy)
    this.redacted ||= r.redacted
    return r.value
  }
  string(value: string): string {
    const r = redactString(value, this.policy)
    this.redacted ||= r.redacted
    return r.value
  }
}
