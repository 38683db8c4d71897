/** Start-up: a bad address fails fast and clearly, AOF is checked, the prefix is validated. */
import { redisStorage } from "@baton/adapter-redis"
import type { StorageAdapter } from "@baton/core"
import { Effect, Exit, Layer } from "effect"
import { Redis } from "ioredis"
import { describe, expect, it } from "vitest"
import { findRedis } from "./support/redis.js"

const location = await findRedis()

/** Builds the adapter's layer and releases it at once; the failure, if any. */
const open = (adapter: StorageAdapter) =>
  Effect.runPromiseExit(Effect.scoped(Effect.asVoid(Layer.build(adapter.layer))))

const failureOf = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error : exit.cause) : null

describe("redis adapter start-up", () => {
  it("fails fast with a StorageError naming no secret when nothing listens at the URL", async () => {
    const started = Date.now()
    const exit = await open(
      redisStorage({ url: "redis://user:s3cret@127.0.0.1:1", connectTimeoutMs: 2_000, log: () => {} })
    )
    expect(failureOf(exit)).toMatchObject({ _tag: "StorageError", reason_code: "STORAGE_UNAVAILABLE" })
    expect(JSON.stringify(failureOf(exit))).not.toContain("s3cret")
    expect(Date.now() - started).toBeLessThan(10_000)
  })

  it("refuses a prefix that could become a hash tag", async () => {
    const exit = await open(redisStorage({ prefix: "{bad}", log: () => {} }))
    expect(failureOf(exit)).toMatchObject({ _tag: "StorageError" })
  })

  it.skipIf(location === null)(
    location === null
      ? "reads the server's AOF setting [skipped: redis not found, set BATON_TEST_REDIS_URL]"
      : "reads the server's AOF setting: a warning when off, a failure with requireAof",
    async () => {
      const url = location!.url
      const admin = new Redis(url)
      try {
        const aof = ((await admin.config("GET", "appendonly")) as string[])[1]
        const warnings: string[] = []
        const relaxed = await open(redisStorage({ url, log: (m) => warnings.push(m) }))
        expect(Exit.isSuccess(relaxed)).toBe(true)
        const strict = await open(redisStorage({ url, requireAof: true, log: () => {} }))
        if (aof === "yes") {
          expect(warnings.filter((w) => /AOF/.test(w))).toEqual([])
          expect(Exit.isSuccess(strict)).toBe(true)
        } else {
          expect(warnings.some((w) => /appendonly no/.test(w))).toBe(true)
          expect(failureOf(strict)).toMatchObject({
            _tag: "StorageError",
            message: expect.stringMatching(/requireAof/)
          })
        }
      } finally {
        await admin.quit()
      }
    }
  )
})
