/**
 * The rules that keep the shared indexes from hiding a run (internal/Indexes.ts),
 * checked on the scripts themselves: a hint only lowers a score, and a settle
 * from an older version cannot undo a newer hint unless that hint went stale.
 */
import { Redis } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"
import { hintScores, STALE_HINT_MS } from "../src/internal/Indexes.js"
import { keyLayout } from "../src/internal/Keys.js"
import { defineScripts } from "../src/internal/Scripts.js"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"

const location = await findRedis()

describe("index hints (pure)", () => {
  it("bounds a patch's scores from below, and never hints a finished run", () => {
    expect(hintScores({ status: "queued", available_at: 500 })).toEqual({ claim: 500, timer: null })
    expect(hintScores({ status: "queued" })).toEqual({ claim: 0, timer: null })
    expect(hintScores({ status: "running", lease_expires_at: 900, timer_at: 700 })).toEqual({
      claim: 900,
      timer: 700
    })
    expect(hintScores({ status: "awaiting_input", lease_expires_at: null, timer_at: 800 })).toEqual({
      claim: null,
      timer: 800
    })
    expect(hintScores({ status: "succeeded", timer_at: null })).toEqual({ claim: null, timer: null })
    expect(hintScores({ lease_expires_at: 300 })).toEqual({ claim: 300, timer: 300 })
  })
})

if (location === null) {
  describe("index scripts", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  describe("index scripts", () => {
    const client = new Redis(location.url)
    const prefix = uniquePrefix("indexes")
    const index = keyLayout(prefix).claimQueue("h")
    const scripts = defineScripts(client)
    const score = async (id: string) => client.zscore(index.zset, id)
    const hint = (id: string, version: number, at: number) =>
      scripts.hintIndex(index.zset, index.versions, id, version, at)
    const settle = (id: string, version: number, at: number | null) =>
      scripts.settleIndex(index.zset, index.versions, id, version, at === null ? "" : at, STALE_HINT_MS)
    /** Moves the entry's hint time back by `ms`, as if Redis's clock had moved on. */
    const age = async (id: string, ms: number) => {
      const [version, at] = String(await client.hget(index.versions, id)).split(":")
      await client.hset(index.versions, id, `${version}:${Number(at) - ms}`)
    }

    afterAll(async () => {
      await dropPrefix(client, prefix)
      await client.quit()
      await location.stop()
    })

    it("a hint lowers a score and never raises it", async () => {
      await hint("a", 2, 100)
      await hint("a", 3, 500)
      expect(await score("a")).toBe("100")
      await hint("a", 4, 50)
      expect(await score("a")).toBe("50")
    })

    it("a settle from an older version cannot raise or remove a newer hint", async () => {
      await settle("b", 1, 1_000)
      await hint("b", 2, 10)
      expect(await settle("b", 1, 1_000)).toBe(0)
      expect(await settle("b", 1, null)).toBe(0)
      expect(await score("b")).toBe("10")
      // The write of version 2 landed: its settle (or a reader of version 2) applies.
      expect(await settle("b", 2, 2_000)).toBe(1)
      expect(await score("b")).toBe("2000")
      expect(await settle("b", 2, null)).toBe(1)
      expect(await score("b")).toBeNull()
    })

    it("a hint whose writer died (older than the stale limit by Redis's clock) no longer blocks", async () => {
      await hint("c", 5, 10)
      expect(await settle("c", 0, null)).toBe(0)
      await age("c", STALE_HINT_MS - 1_000)
      expect(await settle("c", 0, null)).toBe(0)
      await age("c", 1_001)
      expect(await settle("c", 0, null)).toBe(1)
      expect(await score("c")).toBeNull()
    })

    it("hint and settle times are Redis's clock, not the caller's", async () => {
      const [seconds] = await client.time()
      await hint("d", 1, 10)
      const at = Number(String(await client.hget(index.versions, "d")).split(":")[1])
      expect(Math.abs(at - Number(seconds) * 1000)).toBeLessThan(60_000)
    })
  })
}
