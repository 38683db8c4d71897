/**
 * The verified-key cache, alone and inside `verifyKey` (memory store whose key
 * reads are counted, TestClock).
 */

import * as crypto from "node:crypto"
import { makeMemoryStore, memoryStorage } from "@baton/adapter-memory"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, TestClock } from "effect"
import { vi } from "vitest"
import { ALL_SCOPES, type ApiKeyRecord, type Principal } from "../src/ApiKey.js"
import * as Engine from "../src/Engine.js"
import { EngineConfig } from "../src/EngineConfig.js"
import { KeyCache, makeKeyCache } from "../src/KeyCache.js"

// Count the constant-time comparisons verifyKey makes. Hoisted above the imports.
vi.mock("node:crypto", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:crypto")>()
  return { ...actual, timingSafeEqual: vi.fn(actual.timingSafeEqual) }
})

const OPERATOR: Principal = { customerId: "default", keyId: null, scopes: ALL_SCOPES }

const record = (keyId: string, overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  key_id: keyId,
  customer_id: "default",
  name: null,
  scopes: ["runs:read"],
  secret_hash: "00",
  created_at: 0,
  expires_at: null,
  revoked_at: null,
  ...overrides
})

describe("makeKeyCache", () => {
  it("serves a record for the TTL, then forgets it", () => {
    const cache = makeKeyCache(500)
    cache.set(record("key_a1234567"), 1000)
    expect(cache.get("key_a1234567", 1000)?.key_id).toBe("key_a1234567")
    expect(cache.get("key_a1234567", 1499)?.key_id).toBe("key_a1234567")
    expect(cache.get("key_a1234567", 1500)).toBeNull()
    // The stale entry was dropped, not kept.
    expect(cache.size()).toBe(0)
  })

  it("trusts nothing cached when the clock went back", () => {
    const cache = makeKeyCache(500)
    cache.set(record("key_a1234567"), 1000)
    expect(cache.get("key_a1234567", 999)).toBeNull()
  })

  it("holds at most maxEntries, dropping the least recently used", () => {
    const cache = makeKeyCache(10_000, 3)
    for (const id of ["key_a1234567", "key_b1234567", "key_c1234567"]) cache.set(record(id), 0)
    cache.get("key_a1234567", 1) // a is now the most recently used
    cache.set(record("key_d1234567"), 2)
    expect(cache.size()).toBe(3)
    expect(cache.get("key_b1234567", 3)).toBeNull()
    expect(cache.get("key_a1234567", 3)).not.toBeNull()
    expect(cache.get("key_d1234567", 3)).not.toBeNull()
  })

  it("evicts on demand, and caches nothing with a TTL of 0", () => {
    const cache = makeKeyCache(500)
    cache.set(record("key_a1234567"), 0)
    cache.evict("key_a1234567", 0)
    expect(cache.get("key_a1234567", 1)).toBeNull()
    const off = makeKeyCache(0)
    off.set(record("key_a1234567"), 0)
    expect(off.size()).toBe(0)
    expect(off.get("key_a1234567", 0)).toBeNull()
  })

  it("refuses a record read at or before an eviction, and takes one read after it", () => {
    const cache = makeKeyCache(500)
    cache.set(record("key_a1234567"), 100)
    cache.evict("key_a1234567", 200)
    cache.set(record("key_a1234567"), 150) // read before the eviction, finished after it
    cache.set(record("key_a1234567"), 200) // same millisecond: may have started first
    expect(cache.get("key_a1234567", 201)).toBeNull()
    cache.set(record("key_a1234567"), 201)
    expect(cache.get("key_a1234567", 202)?.key_id).toBe("key_a1234567")
    // The newer read cleared the tombstone: an older one is no longer compared against it.
    cache.set(record("key_b1234567"), 300)
    expect(cache.size()).toBe(2)
  })
})

/** A memory store whose key reads are counted, an engine config and a cache of `ttlMs`. */
const countedLayer = (ttlMs: number) => {
  const inner = makeMemoryStore()
  const reads = { count: 0 }
  const keyStore: typeof inner.keyStore = {
    ...inner.keyStore,
    get: (keyId) =>
      Effect.suspend(() => {
        reads.count++
        return inner.keyStore.get(keyId)
      })
  }
  const layer = Layer.mergeAll(
    memoryStorage({ ...inner, keyStore }).layer,
    EngineConfig.layer({ keyCacheTtlMs: ttlMs }),
    KeyCache.layer(ttlMs)
  )
  return { layer, reads, inner }
}

describe("verifyKey with the cache", () => {
  it.effect("reads the store once per TTL for a key in use", () => {
    const { layer, reads } = countedLayer(500)
    return Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      for (let i = 0; i < 5; i++) yield* Engine.verifyKey(issued.key)
      expect(reads.count).toBe(1)
      yield* TestClock.adjust(500)
      yield* Engine.verifyKey(issued.key)
      expect(reads.count).toBe(2)
    }).pipe(Effect.provide(layer))
  })

  it.effect(
    "never accepts a wrong secret for a cached key, re-reads the store for it, and keeps the entry",
    () => {
      const { layer, reads } = countedLayer(500)
      return Effect.gen(function* () {
        const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
        yield* Engine.verifyKey(issued.key)
        expect(reads.count).toBe(1)
        yield* TestClock.adjust(300)
        const wrong = `${issued.key_id}:${"A".repeat(43)}`
        const e = yield* Effect.flip(Engine.verifyKey(wrong))
        expect(e).toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
        // A failure is never answered from the cache: it costs a store read, like an unknown id.
        expect(reads.count).toBe(2)
        // ... and the entry was refreshed, not evicted (anyone knowing the id could flush it).
        yield* TestClock.adjust(400)
        yield* Engine.verifyKey(issued.key)
        expect(reads.count).toBe(2)
        // An unknown id costs the same single read.
        yield* Effect.flip(Engine.verifyKey(`key_${"Z".repeat(24)}:${"A".repeat(43)}`))
        expect(reads.count).toBe(3)
      }).pipe(Effect.provide(layer))
    }
  )

  it.effect(
    "costs the same for an unknown id and a wrong secret, cached or not: one read, two compares",
    () => {
      const { layer, reads } = countedLayer(500)
      const compares = vi.mocked(crypto.timingSafeEqual)
      return Effect.gen(function* () {
        const cached = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
        const uncached = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
        const attempts = {
          "unknown id": `key_${"Z".repeat(24)}:${"A".repeat(43)}`,
          "wrong secret, cached key": `${cached.key_id}:${"A".repeat(43)}`,
          "wrong secret, uncached key": `${uncached.key_id}:${"A".repeat(43)}`
        }
        for (const [what, presented] of Object.entries(attempts)) {
          yield* Engine.verifyKey(cached.key)
          const before = { reads: reads.count, compares: compares.mock.calls.length }
          yield* Effect.flip(Engine.verifyKey(presented))
          expect(
            { reads: reads.count - before.reads, compares: compares.mock.calls.length - before.compares },
            what
          ).toEqual({ reads: 1, compares: 2 })
        }
      }).pipe(Effect.provide(layer))
    }
  )

  it.effect("honours expiry while the key is cached", () => {
    const { layer } = countedLayer(10_000)
    return Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, {
        scopes: ["runs:read"],
        expires_at: new Date(1000).toISOString()
      })
      yield* Engine.verifyKey(issued.key)
      yield* TestClock.adjust(999)
      yield* Engine.verifyKey(issued.key)
      yield* TestClock.adjust(1)
      const e = yield* Effect.flip(Engine.verifyKey(issued.key))
      expect(e).toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
    }).pipe(Effect.provide(layer))
  })

  it.effect("a revocation on this engine evicts at once; one made elsewhere lands within the TTL", () => {
    const { layer, inner } = countedLayer(500)
    return Effect.gen(function* () {
      const here = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      yield* Engine.verifyKey(here.key)
      yield* Engine.revokeKey(OPERATOR, here.key_id)
      yield* Effect.flip(Engine.verifyKey(here.key))

      const elsewhere = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      yield* Engine.verifyKey(elsewhere.key)
      // Another process revokes: straight in the store, this engine's cache untouched.
      yield* inner.keyStore.revoke(elsewhere.key_id, "default", 1)
      yield* TestClock.adjust(499)
      yield* Engine.verifyKey(elsewhere.key)
      yield* TestClock.adjust(1)
      const e = yield* Effect.flip(Engine.verifyKey(elsewhere.key))
      expect(e).toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
    }).pipe(Effect.provide(layer))
  })

  it.effect("a wrong secret evicts a cached key only when the store says it was revoked", () => {
    const { layer, reads, inner } = countedLayer(500)
    return Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      yield* Engine.verifyKey(issued.key)
      yield* inner.keyStore.revoke(issued.key_id, "default", 1)
      yield* Effect.flip(Engine.verifyKey(`${issued.key_id}:${"A".repeat(43)}`))
      // The store read of that failure found the revocation: the right secret no longer passes either.
      const e = yield* Effect.flip(Engine.verifyKey(issued.key))
      expect(e).toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
      expect(reads.count).toBe(3)
    }).pipe(Effect.provide(layer))
  })

  it.effect("a verification in flight during a revocation here does not re-cache what it read", () => {
    const inner = makeMemoryStore()
    const held = {
      gate: null as Deferred.Deferred<void> | null,
      reading: null as Deferred.Deferred<void> | null
    }
    // A key read that fetches the record, then waits for the test before it returns.
    const keyStore: typeof inner.keyStore = {
      ...inner.keyStore,
      get: (keyId) =>
        Effect.flatMap(inner.keyStore.get(keyId), (record) => {
          const { gate, reading } = held
          if (gate === null || reading === null) return Effect.succeed(record)
          held.gate = null
          return Deferred.succeed(reading, undefined).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.as(record)
          )
        })
    }
    const layer = Layer.mergeAll(
      memoryStorage({ ...inner, keyStore }).layer,
      EngineConfig.layer({ keyCacheTtlMs: 500 }),
      KeyCache.layer(500)
    )
    return Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      const gate = yield* Deferred.make<void>()
      const reading = yield* Deferred.make<void>()
      held.gate = gate
      held.reading = reading
      const inFlight = yield* Effect.fork(Engine.verifyKey(issued.key))
      yield* Deferred.await(reading) // it has read the record, not yet revoked
      yield* Engine.revokeKey(OPERATOR, issued.key_id)
      yield* Deferred.succeed(gate, undefined)
      // It read before the revocation, so it passes; what it read must not be served afterwards.
      yield* Fiber.join(inFlight)
      const e = yield* Effect.flip(Engine.verifyKey(issued.key))
      expect(e).toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
    }).pipe(Effect.provide(layer))
  })

  it.effect(
    "keyStillValid: by id through the cache, false once revoked or expired, true without a key",
    () => {
      const { layer, reads, inner } = countedLayer(500)
      return Effect.gen(function* () {
        expect(yield* Engine.keyStillValid(OPERATOR)).toBe(true)
        expect(reads.count).toBe(0)
        const issued = yield* Engine.issueKey(OPERATOR, {
          scopes: ["runs:read"],
          expires_at: new Date(2000).toISOString()
        })
        const principal = yield* Engine.verifyKey(issued.key)
        expect(reads.count).toBe(1)
        for (let i = 0; i < 3; i++) expect(yield* Engine.keyStillValid(principal)).toBe(true)
        expect(reads.count).toBe(1)
        yield* TestClock.adjust(500)
        expect(yield* Engine.keyStillValid(principal)).toBe(true)
        expect(reads.count).toBe(2)
        // Expiry is checked against the clock even while cached.
        yield* TestClock.adjust(1500)
        expect(yield* Engine.keyStillValid(principal)).toBe(false)
        // Revoked elsewhere: seen once the entry is older than the TTL.
        const other = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
        const otherPrincipal = yield* Engine.verifyKey(other.key)
        yield* inner.keyStore.revoke(other.key_id, "default", 1)
        expect(yield* Engine.keyStillValid(otherPrincipal)).toBe(true)
        yield* TestClock.adjust(500)
        expect(yield* Engine.keyStillValid(otherPrincipal)).toBe(false)
        // An unknown key id, or one of another customer, is not valid.
        expect(yield* Engine.keyStillValid({ ...otherPrincipal, keyId: `key_${"Z".repeat(24)}` })).toBe(false)
        const third = yield* Engine.verifyKey(
          (yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })).key
        )
        expect(yield* Engine.keyStillValid(third)).toBe(true)
        expect(yield* Engine.keyStillValid({ ...third, customerId: "someone-else" })).toBe(false)
      }).pipe(Effect.provide(layer))
    }
  )

  it.effect("with a TTL of 0 reads the store on every request", () => {
    const { layer, reads } = countedLayer(0)
    return Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      for (let i = 0; i < 3; i++) yield* Engine.verifyKey(issued.key)
      expect(reads.count).toBe(3)
    }).pipe(Effect.provide(layer))
  })
})
