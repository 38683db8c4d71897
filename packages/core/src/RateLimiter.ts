/**
 * Token buckets by key (an API key id), per process: each holds up to `burst`
 * tokens and refills at `perSecond`; a request takes one. Memory stays
 * bounded: a bucket idle long enough to be full again is the same as no
 * bucket and is dropped, and at most `maxBuckets` are kept.
 */

export interface RateLimit {
  /** Tokens added per second; 0 turns limiting off. */
  readonly perSecond: number
  /** Tokens a bucket holds at most: the burst a quiet key may send at once. */
  readonly burst: number
}

export const DEFAULT_RATE_LIMIT: RateLimit = { perSecond: 100, burst: 200 }
export const DEFAULT_MAX_BUCKETS = 100_000

export type TakeResult =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryAfterMs: number }

export interface RateLimiter {
  /** Takes a token from `key`'s bucket at `now` (ms), or says how long until one is there. */
  readonly take: (key: string, now: number) => TakeResult
  /** Buckets held now (for tests and metrics). */
  readonly size: () => number
}

interface Bucket {
  tokens: number
  at: number
}

const ALLOWED: TakeResult = { allowed: true }

export const makeRateLimiter = (limit: RateLimit, maxBuckets: number = DEFAULT_MAX_BUCKETS): RateLimiter => {
  if (!(limit.perSecond >= 0) || !(limit.burst >= 1))
    throw new RangeError("rate limit: perSecond must be ≥ 0 and burst ≥ 1")
  const perMs = limit.perSecond / 1000
  /** After this long untouched a bucket is full again: dropping it changes nothing. */
  const refillMs = limit.perSecond > 0 ? limit.burst / perMs : 0
  // Insertion order is last-use order (a bucket is re-inserted on each take): the idle ones come first.
  const buckets = new Map<string, Bucket>()

  const dropIdle = (now: number) => {
    for (const [key, bucket] of buckets) {
      if (now - bucket.at < refillMs && buckets.size < maxBuckets) break
      buckets.delete(key)
    }
  }

  return {
    take: (key, now) => {
      if (limit.perSecond <= 0) return ALLOWED
      dropIdle(now)
      const bucket = buckets.get(key) ?? { tokens: limit.burst, at: now }
      buckets.delete(key)
      // A clock that went back refills nothing and takes nothing away.
      const elapsed = Math.max(0, now - bucket.at)
      bucket.tokens = Math.min(limit.burst, bucket.tokens + elapsed * perMs)
      bucket.at = Math.max(bucket.at, now)
      buckets.set(key, bucket)
      if (bucket.tokens >= 1) {
        bucket.tokens -= 1
        return ALLOWED
      }
      return { allowed: false, retryAfterMs: Math.ceil((1 - bucket.tokens) / perMs) }
    },
    size: () => buckets.size
  }
}
