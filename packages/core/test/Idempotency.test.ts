import { createHash } from "node:crypto"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import {
  checkIdempotencyKey,
  DEFAULT_IDEMPOTENCY_TTL_MS,
  fingerprint,
  IDEMPOTENCY_KEY_MAX_LENGTH
} from "../src/Idempotency.js"
import type { JsonValue } from "../src/Json.js"

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex")

/** The same JSON value with every object's keys in reverse order. */
const reorder = (v: JsonValue): JsonValue => {
  if (Array.isArray(v)) return v.map(reorder)
  if (v === null || typeof v !== "object") return v
  return Object.fromEntries(
    Object.entries(v)
      .reverse()
      .map(([k, x]) => [k, reorder(x)])
  )
}

const json = fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<JsonValue>

describe("fingerprint", () => {
  it("is the SHA-256 hex of the RFC 8785 canonical JSON", () => {
    expect(fingerprint({})).toBe(sha256("{}"))
    expect(fingerprint({ b: [1, "x", null], a: true })).toBe(sha256('{"a":true,"b":[1,"x",null]}'))
    expect(fingerprint({ n: 1.0, m: 1e21 })).toBe(sha256('{"m":1e+21,"n":1}'))
    expect(fingerprint({ a: 1 })).toMatch(/^[0-9a-f]{64}$/)
  })

  it("does not depend on key order, at any depth", () => {
    expect(fingerprint({ input: { x: 1, y: [{ p: 1, q: 2 }] }, handler: "default" })).toBe(
      fingerprint({ handler: "default", input: { y: [{ q: 2, p: 1 }], x: 1 } })
    )
    fc.assert(
      fc.property(json, (v) => {
        expect(fingerprint(reorder(v))).toBe(fingerprint(v))
      }),
      { numRuns: 300 }
    )
  })

  it("differs for different bodies", () => {
    expect(fingerprint({ input: "a" })).not.toBe(fingerprint({ input: "b" }))
    expect(fingerprint({ input: 1 })).not.toBe(fingerprint({ input: "1" }))
    expect(fingerprint([1, 2])).not.toBe(fingerprint([2, 1]))
    expect(fingerprint({ a: null })).not.toBe(fingerprint({}))
    fc.assert(
      fc.property(json, json, (a, b) => {
        fc.pre(JSON.stringify(reorder(a)) !== JSON.stringify(reorder(b)))
        expect(fingerprint(a)).not.toBe(fingerprint(b))
      }),
      { numRuns: 300 }
    )
  })

  it("refuses what is not JSON", () => {
    expect(() => fingerprint(undefined as never)).toThrow(TypeError)
  })
})

describe("checkIdempotencyKey", () => {
  it("reports a missing or empty key as Missing", () => {
    expect(checkIdempotencyKey(undefined)).toEqual({ _tag: "Missing" })
    expect(checkIdempotencyKey(null)).toEqual({ _tag: "Missing" })
    expect(checkIdempotencyKey("")).toEqual({ _tag: "Missing" })
  })

  it("accepts printable ASCII up to 255 characters", () => {
    expect(IDEMPOTENCY_KEY_MAX_LENGTH).toBe(255)
    for (const key of [
      "k",
      "order-42",
      "a".repeat(255),
      "!~#$%&'()*+,-./:;<=>?@[]^_`{|}",
      crypto.randomUUID()
    ])
      expect(checkIdempotencyKey(key), key).toEqual({ _tag: "Valid" })
  })

  it("refuses a key that is too long", () => {
    const r = checkIdempotencyKey("a".repeat(256))
    expect(r._tag).toBe("Invalid")
    expect(r._tag === "Invalid" && r.message).toMatch(/255/)
  })

  it.each([
    ["a space", "a b"],
    ["a tab", "a\tb"],
    ["a newline", "a\nb"],
    ["a NUL", "a\u0000b"],
    ["DEL", "a\u007fb"],
    ["non-ASCII", "clé"],
    ["an emoji", "🔑"]
  ])("refuses a key with %s", (_, key) => {
    expect(checkIdempotencyKey(key)._tag).toBe("Invalid")
  })

  it("refuses a key that is not a string (callers outside TypeScript)", () => {
    for (const key of [42, {}, ["k"], true]) expect(checkIdempotencyKey(key as never)._tag).toBe("Invalid")
  })

  it("keys live 24 hours by default", () => {
    expect(DEFAULT_IDEMPOTENCY_TTL_MS).toBe(24 * 3600 * 1000)
  })
})
