import * as crypto from "node:crypto"
import { afterEach, describe, expect, it, vi } from "vitest"
import {
  ALL_SCOPES,
  CUSTOMER_ID_PATTERN,
  hashSecret,
  KEY_ID_PATTERN,
  makeKeyId,
  makeSecret,
  parseKey,
  SECRET_PATTERN,
  secretMatches,
  toPublicKey
} from "../src/ApiKey.js"

// Spy on the comparison secretMatches must use (constant time). Hoisted above the imports.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>()
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})

afterEach(() => {
  vi.mocked(crypto.timingSafeEqual).mockClear()
})

describe("key material", () => {
  it("mints public key ids and 256-bit secrets of the documented shape", () => {
    const ids = new Set(Array.from({ length: 50 }, makeKeyId))
    const secrets = new Set(Array.from({ length: 50 }, makeSecret))
    expect(ids.size).toBe(50)
    expect(secrets.size).toBe(50)
    for (const id of ids) expect(id).toMatch(/^key_[A-Za-z0-9]{24}$/)
    for (const s of secrets) {
      expect(s).toMatch(SECRET_PATTERN)
      expect(Buffer.from(s, "base64url")).toHaveLength(32)
    }
    expect([...ids].every((id) => KEY_ID_PATTERN.test(id))).toBe(true)
  })

  it("stores only the SHA-256 of a secret", () => {
    const secret = makeSecret()
    const hash = hashSecret(secret)
    expect(hash).toBe(crypto.createHash("sha256").update(secret).digest("hex"))
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    expect(hash).not.toContain(secret)
    expect(hashSecret(secret)).toBe(hash)
    expect(hashSecret(`${secret}x`)).not.toBe(hash)
  })

  it("lists every scope of SPEC §6", () => {
    expect(ALL_SCOPES).toEqual(["runs:read", "runs:write", "runs:signal", "keys:admin"])
    expect(CUSTOMER_ID_PATTERN.test("default")).toBe(true)
    expect(CUSTOMER_ID_PATTERN.test("no spaces")).toBe(false)
  })
})

describe("secretMatches", () => {
  it("is true for the secret and false for any other, comparing in constant time", () => {
    const secret = makeSecret()
    const stored = hashSecret(secret)
    expect(secretMatches(secret, stored)).toBe(true)
    expect(secretMatches(makeSecret(), stored)).toBe(false)
    expect(secretMatches(secret.slice(1), stored)).toBe(false)
    expect(secretMatches("", stored)).toBe(false)
    const calls = vi.mocked(crypto.timingSafeEqual).mock.calls
    expect(calls).toHaveLength(4)
    // both sides are digests of one length: the time taken says nothing about the secret
    for (const [a, b] of calls) {
      expect((a as Buffer).length).toBe(32)
      expect((b as Buffer).length).toBe(32)
    }
  })

  it("is false for a malformed stored hash, without throwing", () => {
    const secret = makeSecret()
    for (const stored of [
      "",
      "zz",
      hashSecret(secret).slice(0, 62),
      `${hashSecret(secret)}00`,
      "not hex at all"
    ])
      expect(secretMatches(secret, stored), stored).toBe(false)
  })
})

describe("parseKey", () => {
  it("splits key_id:secret", () => {
    const keyId = makeKeyId()
    const secret = makeSecret()
    expect(parseKey(`${keyId}:${secret}`)).toEqual({ keyId, secret })
    expect(parseKey("key_abcdefgh:abcdefghijklmnop")).toEqual({
      keyId: "key_abcdefgh",
      secret: "abcdefghijklmnop"
    })
  })

  it.each([
    ["no colon", "key_abcdefgh12345678"],
    ["an empty secret", "key_abcdefgh:"],
    ["an empty key id", ":abcdefghijklmnopqrst"],
    ["a wrong prefix", "kee_abcdefgh:abcdefghijklmnop"],
    ["a short key id", "key_abc:abcdefghijklmnop"],
    ["a short secret", "key_abcdefgh:short"],
    ["a colon in the secret", "key_abcdefgh:abcdefgh:ijklmnop"],
    ["spaces", " key_abcdefgh:abcdefghijklmnop"],
    ["a bearer prefix", "Bearer key_abcdefgh:abcdefghijklmnop"],
    ["nothing", ""]
  ])("refuses %s", (_, presented) => {
    expect(parseKey(presented)).toBeNull()
  })
})

describe("toPublicKey", () => {
  it("shows ISO times and never the hash", () => {
    const record = {
      key_id: "key_abcdefgh",
      customer_id: "acme",
      name: "ci",
      scopes: ["runs:read" as const],
      secret_hash: hashSecret("abcdefghijklmnop"),
      created_at: Date.UTC(2026, 0, 1),
      expires_at: null,
      revoked_at: Date.UTC(2026, 0, 2)
    }
    const shown = toPublicKey(record)
    expect(shown).toEqual({
      key_id: "key_abcdefgh",
      customer_id: "acme",
      name: "ci",
      scopes: ["runs:read"],
      created_at: "2026-01-01T00:00:00.000Z",
      expires_at: null,
      revoked_at: "2026-01-02T00:00:00.000Z"
    })
    expect(JSON.stringify(shown)).not.toContain(record.secret_hash)
  })
})
