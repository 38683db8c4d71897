import { describe, expect, it } from "vitest"
import { makeRateLimiter } from "../src/RateLimiter.js"

describe("makeRateLimiter", () => {
  it("lets a burst through, then refuses until a token has refilled", () => {
    const limiter = makeRateLimiter({ perSecond: 10, burst: 3 })
    for (let i = 0; i < 3; i++) expect(limiter.take("k", 1000)).toEqual({ allowed: true })
    expect(limiter.take("k", 1000)).toEqual({ allowed: false, retryAfterMs: 100 })
    expect(limiter.take("k", 1050)).toEqual({ allowed: false, retryAfterMs: 50 })
    expect(limiter.take("k", 1100)).toEqual({ allowed: true })
    expect(limiter.take("k", 1100)).toMatchObject({ allowed: false })
  })

  it("refills at the configured rate and never above the burst", () => {
    const limiter = makeRateLimiter({ perSecond: 100, burst: 5 })
    for (let i = 0; i < 5; i++) limiter.take("k", 0)
    // Ten seconds later the bucket holds 5, not 1000.
    let allowed = 0
    for (let i = 0; i < 20; i++) if (limiter.take("k", 10_000).allowed) allowed++
    expect(allowed).toBe(5)
  })

  it("keeps one bucket per key", () => {
    const limiter = makeRateLimiter({ perSecond: 1, burst: 1 })
    expect(limiter.take("a", 0).allowed).toBe(true)
    expect(limiter.take("a", 0).allowed).toBe(false)
    expect(limiter.take("b", 0).allowed).toBe(true)
  })

  it("drops buckets idle long enough to be full again, and holds at most maxBuckets", () => {
    const limiter = makeRateLimiter({ perSecond: 10, burst: 10 }, 100)
    for (let i = 0; i < 50; i++) limiter.take(`k${i}`, 0)
    expect(limiter.size()).toBe(50)
    // Full again after burst / perSecond = 1 s: all 50 go when the next request comes.
    limiter.take("late", 1000)
    expect(limiter.size()).toBe(1)
    for (let i = 0; i < 500; i++) limiter.take(`m${i}`, 1000)
    expect(limiter.size()).toBeLessThanOrEqual(100)
  })

  it("a clock that goes back neither refills nor breaks the bucket", () => {
    const limiter = makeRateLimiter({ perSecond: 10, burst: 1 })
    expect(limiter.take("k", 5000).allowed).toBe(true)
    expect(limiter.take("k", 1000)).toEqual({ allowed: false, retryAfterMs: 100 })
  })

  it("is off with perSecond 0, and refuses a nonsensical configuration", () => {
    const off = makeRateLimiter({ perSecond: 0, burst: 1 })
    for (let i = 0; i < 1000; i++) expect(off.take("k", 0).allowed).toBe(true)
    expect(off.size()).toBe(0)
    expect(() => makeRateLimiter({ perSecond: -1, burst: 1 })).toThrow(RangeError)
    expect(() => makeRateLimiter({ perSecond: 1, burst: 0 })).toThrow(RangeError)
    expect(() => makeRateLimiter({ perSecond: Number.NaN, burst: 1 })).toThrow(RangeError)
  })
})
