/**
 * The verified-key cache: key records that passed a verification, kept per
 * process for a short time so a busy key is not read from the store on every
 * request. It holds records, never answers: each request still compares its
 * secret's hash with the record's (constant time) and checks revocation and
 * expiry against the clock. Failures are never cached.
 */
import { Context, Layer } from "effect"
import type { ApiKeyRecord } from "./ApiKey.js"

/** Long enough to spare the store on a busy key, short enough that a revocation elsewhere lands within 1 s. */
export const DEFAULT_KEY_CACHE_TTL_MS = 500
export const DEFAULT_KEY_CACHE_MAX_ENTRIES = 10_000

export interface KeyCacheShape {
  /** The record cached for `keyId` less than the TTL ago, else null (and a stale entry is dropped). */
  readonly get: (keyId: string, now: number) => ApiKeyRecord | null
  /** Caches a record that was just verified. */
  readonly set: (record: ApiKeyRecord, now: number) => void
  /** Drops a key at once (revoked here, or a wrong secret was presented for it). */
  readonly evict: (keyId: string) => void
  readonly size: () => number
}

/** An LRU of at most `maxEntries` records, each served for `ttlMs` after it was cached. `ttlMs` 0: off. */
export const makeKeyCache = (
  ttlMs: number = DEFAULT_KEY_CACHE_TTL_MS,
  maxEntries: number = DEFAULT_KEY_CACHE_MAX_ENTRIES
): KeyCacheShape => {
  // A Map iterates in insertion order: re-inserting on a hit keeps the least recently used first.
  const entries = new Map<string, { readonly record: ApiKeyRecord; readonly cachedAt: number }>()
  const on = ttlMs > 0 && maxEntries > 0
  return {
    get: (keyId, now) => {
      const entry = entries.get(keyId)
      if (entry === undefined) return null
      entries.delete(keyId)
      // `now < cachedAt`: the clock went back; trust nothing cached before.
      if (now - entry.cachedAt >= ttlMs || now < entry.cachedAt) return null
      entries.set(keyId, entry)
      return entry.record
    },
    set: (record, now) => {
      if (!on) return
      entries.delete(record.key_id)
      entries.set(record.key_id, { record, cachedAt: now })
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next()
        if (oldest.done === true) break
        entries.delete(oldest.value)
      }
    },
    evict: (keyId) => {
      entries.delete(keyId)
    },
    size: () => entries.size
  }
}

/** The engine runtime's cache. Programs read it with `Effect.serviceOption`: without it they read the store. */
export class KeyCache extends Context.Tag("@baton/core/KeyCache")<KeyCache, KeyCacheShape>() {
  static layer(ttlMs?: number, maxEntries?: number): Layer.Layer<KeyCache> {
    return Layer.sync(KeyCache, () => makeKeyCache(ttlMs, maxEntries))
  }
}
