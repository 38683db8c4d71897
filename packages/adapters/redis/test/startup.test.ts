/** Start-up: a bad address fails fast and clearly, AOF is checked (also without CONFIG), the prefix is validated. */
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

/** A client whose named commands fail as on a managed service that renamed them away. */
const withoutCommands = (client: Redis, disabled: ReadonlyArray<string>): Redis =>
  new Proxy(client, {
    get(target, prop) {
      if (typeof prop === "string" && disabled.includes(prop))
        return () => Promise.reject(new Error(`ERR unknown command '${prop}'`))
      const value = Reflect.get(target, prop, target)
      return typeof value === "function" ? value.bind(target) : value
    }
  })

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

  it.skipIf(location === null)(
    location === null
      ? "without CONFIG, reads AOF from INFO; with neither, requireAof refuses to start [skipped: redis not found]"
      : "without CONFIG, reads AOF from INFO; with neither, requireAof refuses to start",
    async () => {
      const url = location!.url
      const admin = new Redis(url)
      const owned = new Redis(url)
      try {
        const aof = ((await admin.config("GET", "appendonly")) as string[])[1]
        // CONFIG renamed away: INFO persistence answers the same question.
        const noConfig = withoutCommands(owned, ["config"])
        const viaInfo = await open(redisStorage({ client: noConfig, requireAof: true, log: () => {} }))
        expect(Exit.isSuccess(viaInfo)).toBe(aof === "yes")
        // Neither CONFIG nor INFO: durability cannot be proven, so requireAof must not pass.
        const blind = withoutCommands(owned, ["config", "info"])
        const warnings: string[] = []
        expect(
          Exit.isSuccess(await open(redisStorage({ client: blind, log: (m) => warnings.push(m) })))
        ).toBe(true)
        expect(warnings.some((w) => /durability unknown/.test(w))).toBe(true)
        expect(
          failureOf(await open(redisStorage({ client: blind, requireAof: true, log: () => {} })))
        ).toMatchObject({
          _tag: "StorageError",
          message: expect.stringMatching(/requireAof/)
        })
        // A caller's own client is never closed by the adapter.
        expect(await owned.ping()).toBe("PONG")
      } finally {
        await admin.quit()
        await owned.quit()
      }
    }
  )

  it.skipIf(location === null)(
    location === null
      ? "never closes a caller's own client, not even when its probe fails [skipped: redis not found]"
      : "never closes a caller's own client, not even when its probe fails",
    async () => {
      const owned = new Redis(location!.url)
      try {
        expect(await owned.ping()).toBe("PONG")
        const failing = withoutCommands(owned, ["ping"])
        const exit = await open(redisStorage({ client: failing, log: () => {} }))
        expect(failureOf(exit)).toMatchObject({ _tag: "StorageError" })
        expect(owned.status).toBe("ready")
        expect(await owned.get("baton-test:nothing")).toBeNull()
      } finally {
        await owned.quit()
      }
    }
  )
})
