import { createHash } from "node:crypto"
import canonicalize from "canonicalize"
import type { JsonValue } from "./Json.js"

/** Default lifetime of an idempotency key (SPEC §4). */
export const DEFAULT_IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000

export const IDEMPOTENCY_KEY_MAX_LENGTH = 255
/** Printable ASCII without spaces: safe in a header, a SQL value, a Redis key and a log line. */
const IDEMPOTENCY_KEY_PATTERN = /^[\x21-\x7e]+$/

export type IdempotencyKeyCheck =
  | { readonly _tag: "Valid" }
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Invalid"; readonly message: string }

export const checkIdempotencyKey = (key: string | undefined | null): IdempotencyKeyCheck => {
  if (key === undefined || key === null || key === "") return { _tag: "Missing" }
  // Callers outside TypeScript may pass anything.
  if (typeof key !== "string") return { _tag: "Invalid", message: "must be a string" }
  if (key.length > IDEMPOTENCY_KEY_MAX_LENGTH)
    return { _tag: "Invalid", message: `must be at most ${IDEMPOTENCY_KEY_MAX_LENGTH} characters` }
  if (!IDEMPOTENCY_KEY_PATTERN.test(key))
    return { _tag: "Invalid", message: "must be printable ASCII without spaces" }
  return { _tag: "Valid" }
}

/**
 * SHA-256 (hex) of the RFC 8785 canonical JSON of `body`: the same for any key
 * order or number spelling, different for any different value.
 */
export const fingerprint = (body: JsonValue): string => {
  const canonical = canonicalize(body)
  if (canonical === undefined) throw new TypeError("fingerprint: body is not JSON")
  return createHash("sha256").update(canonical, "utf8").digest("hex")
}

/** The idempotency record stored beside a run (adapters' row). */
export interface IdempotencyRecord {
  readonly customer_id: string
  readonly key: string
  readonly fingerprint: string
  readonly run_id: string
  readonly expires_at: number
}
