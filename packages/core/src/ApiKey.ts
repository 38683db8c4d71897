import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import { Schema } from "effect"

export const Scope = Schema.Literal("runs:read", "runs:write", "runs:signal", "keys:admin")
export type Scope = typeof Scope.Type
export const ALL_SCOPES: ReadonlyArray<Scope> = ["runs:read", "runs:write", "runs:signal", "keys:admin"]

/** `key_` + 24 base62 characters: public, safe to log. */
export const KEY_ID_PATTERN = /^key_[A-Za-z0-9]{8,64}$/
/** 32 random bytes, base64url: 43 characters. */
export const SECRET_PATTERN = /^[A-Za-z0-9_-]{16,128}$/
export const CUSTOMER_ID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/

/** A key as stored (adapters' row): only the SHA-256 of the secret, never the secret. */
export const ApiKeyRecord = Schema.Struct({
  key_id: Schema.String,
  customer_id: Schema.String,
  name: Schema.NullOr(Schema.String),
  scopes: Schema.Array(Scope),
  secret_hash: Schema.String,
  created_at: Schema.Number,
  expires_at: Schema.NullOr(Schema.Number),
  revoked_at: Schema.NullOr(Schema.Number)
})
export type ApiKeyRecord = typeof ApiKeyRecord.Type

/** A key as shown by the API: never the hash, never the secret. */
export const ApiKey = Schema.Struct({
  key_id: Schema.String,
  customer_id: Schema.String,
  name: Schema.NullOr(Schema.String),
  scopes: Schema.Array(Scope),
  created_at: Schema.String,
  expires_at: Schema.NullOr(Schema.String),
  revoked_at: Schema.NullOr(Schema.String)
})
export type ApiKey = typeof ApiKey.Type

export const toPublicKey = (r: ApiKeyRecord): ApiKey => ({
  key_id: r.key_id,
  customer_id: r.customer_id,
  name: r.name,
  scopes: r.scopes,
  created_at: new Date(r.created_at).toISOString(),
  expires_at: r.expires_at === null ? null : new Date(r.expires_at).toISOString(),
  revoked_at: r.revoked_at === null ? null : new Date(r.revoked_at).toISOString()
})

/** Who is calling: what every engine program is scoped by. */
export interface Principal {
  readonly customerId: string
  readonly keyId: string | null
  readonly scopes: ReadonlyArray<Scope>
}

const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
const base62 = (n: number): string => {
  let out = ""
  for (const b of randomBytes(n)) out += BASE62[b % 62]
  return out
}

export const makeKeyId = (): string => `key_${base62(24)}`
/** 256 bits of randomness. */
export const makeSecret = (): string => randomBytes(32).toString("base64url")

export const hashSecret = (secret: string): string =>
  createHash("sha256").update(secret, "utf8").digest("hex")

/** Constant-time comparison of a presented secret with a stored hash. */
export const secretMatches = (secret: string, storedHash: string): boolean => {
  const a = Buffer.from(hashSecret(secret), "hex")
  const b = Buffer.from(storedHash, "hex")
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Splits `key_id:secret`; null when the shape is wrong. */
export const parseKey = (presented: string): { keyId: string; secret: string } | null => {
  const i = presented.indexOf(":")
  if (i < 0) return null
  const keyId = presented.slice(0, i)
  const secret = presented.slice(i + 1)
  return KEY_ID_PATTERN.test(keyId) && SECRET_PATTERN.test(secret) ? { keyId, secret } : null
}
