/**
 * The verified-key cache: key records that passed a verification, kept per
 * process for a short time so a busy key is not read from the store on every
 * request. It holds records, never answers: each request still compares its
 * secret's hash with the record's (constant time) and checks revocation and
 * expiry against the clock. Failures are never cached.
 *
 * An eviction leaves a tombstone for the TTL: a record read from the store
 * before the eviction (a verification in flight during a revocation) is not
 * cached again, so a revocation on this process is effective at once.
 */
import { Context, Layer } from "effect"
import type { ApiKeyRecord } from "./ApiKey.js"

/** Long enough to spare the store on a busy key, short enough that a revocation elsewhere lands within 1 s. */
export const DEFAULT_KEY_CACHE_TTL_MS = 500
export const DEFAULT_KEY_CACHE_MAX_ENTRIES = 10_000

export interface KeyCacheShape {
  /** The record cached for `keyId` less than the TTL ago, else null (and a stale entry is dropped). */
  readonly get: (keyId: string, now: number) => ApiKeyRecord | null
  /**
   * Caches a record read from the store at `readAt` (taken before the read). Ignored when the key
   * was evicted at or after `readAt`: that read may predate a revocation.
   */
  readonly set: (record: ApiKeyRecord, readAt: number) => void
  /** Drops a key at once (revoked, expired or gone) and refuses older reads of it for the TTL. */
  readonly evict: (keyId: string, now: number) => void
  readonly size: () => number
}

/**
 * An LRU of at most `maxEntries` records, each served for `ttlMs` after it was read, and as many
 * tombstones (a tombstone lasts until a newer read replaces it; a record read before it is older than
 * the TTL anyway). `ttlMs` 0: off.
 */
export const makeKeyCache = (
  ttlMs: number = DEFAULT_KEY_CACHE_TTL_MS,
  maxEntries: number = DEFAULT_KEY_CACHE_MAX_ENTRIES
): KeyCacheShape => {
  // A Map iterates in insertion order: re-inserting on a hit keeps the least recently used first.
  const entries = new Map<string, { readonly record: ApiKeyRecord; readonly cachedAt: number }>()
  // Key id → when it was evicted; bounded like the entries, oldest first.
  const tombstones = new Map<string, number>()
  const on = ttlMs > 0 && maxEntries > 0
  const trim = (map: Map<string, unknown>) => {
    while (map.size > maxEntries) {
      const oldest = map.keys().next()
      if (oldest.done === true) break
      map.delete(oldest.value)
    }
  }
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
    set: (record, readAt) => {
      if (!on) return
      const evictedAt = tombstones.get(record.key_id)
      if (evictedAt !== undefined) {
        // Same millisecond counts as before: the read may have started just ahead of the eviction.
        if (readAt <= evictedAt) return
        tombstones.delete(record.key_id)
      }
      entries.delete(record.key_id)
      entries.set(record.key_id, { record, cachedAt: readAt })
      trim(entries)
    },
    evict: (keyId, now) => {
      entries.delete(keyId)
      if (!on) return
      tombstones.delete(keyId)
      tombstones.set(keyId, now)
      trim(tombstones)
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
