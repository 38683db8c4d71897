/** Retention: a finished run and its events get the configured TTL; an idempotency key lives until expires_at + grace. */
import { redisStorage } from "@baton/adapter-redis"
import { createEngine, Idempotency, isTerminal } from "@baton/core"
import { Redis } from "ioredis"
import { describe, expect, it } from "vitest"
import { keyLayout } from "../src/internal/Keys.js"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"

const location = await findRedis()

if (location === null) {
  describe("redis retention", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  describe("redis retention", () => {
    it("expires a finished run and its events after finishedRunTtlMs, and idempotency keys after expires_at + grace", async () => {
      const prefix = uniquePrefix("retention")
      const keys = keyLayout(prefix)
      const admin = new Redis(location.url)
      const engine = createEngine({
        storage: redisStorage({
          url: location.url,
          prefix,
          retention: { finishedRunTtlMs: 600_000, idempotencyGraceMs: 5_000 },
          log: () => {}
        }),
        handlers: { quick: async () => ({ ok: true }) }
      })
      try {
        const worker = await engine.startWorker({ pollIntervalMs: 5 })
        const created = await engine.createRun({ input: {}, handler: "quick" }, { idempotencyKey: "ret-1" })
        if (created._tag !== "Created") throw new Error(`expected Created, got ${created._tag}`)
        const runId = created.run.id
        // A live run has no TTL.
        expect(await admin.pttl(keys.run(runId))).toBe(-1)
        const deadline = Date.now() + 10_000
        while (!isTerminal((await engine.getRun(runId)).status)) {
          if (Date.now() > deadline) throw new Error("the run did not finish")
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
        await worker.stop()
        for (const key of [keys.run(runId), keys.events(runId)]) {
          const ttl = await admin.pttl(key)
          expect(ttl).toBeGreaterThan(0)
          expect(ttl).toBeLessThanOrEqual(600_000)
        }
        const idemTtl = await admin.pttl(keys.idempotency("default", "ret-1"))
        expect(idemTtl).toBeGreaterThan(Idempotency.DEFAULT_IDEMPOTENCY_TTL_MS - 60_000)
        expect(idemTtl).toBeLessThanOrEqual(Idempotency.DEFAULT_IDEMPOTENCY_TTL_MS + 5_000)
        // Gone from the indexes once finished.
        expect(await admin.zscore(keys.claimQueue("quick").zset, runId)).toBeNull()
        expect(await admin.zscore(keys.timers.zset, runId)).toBeNull()
      } finally {
        await engine.dispose({ graceMs: 0 })
        await dropPrefix(admin, prefix)
        await admin.quit()
        await location.stop()
      }
    })
  })
}
