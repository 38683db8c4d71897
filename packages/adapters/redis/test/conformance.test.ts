import { runAdapterConformance } from "@baton/adapter-conformance"
import { redisBackdoor, redisStorage } from "@baton/adapter-redis"
import { Redis } from "ioredis"
import { describe, it } from "vitest"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"

const location = await findRedis()

if (location === null) {
  describe("adapter conformance: redis", () => {
    it.skip("redis not found: set BATON_TEST_REDIS_URL (or start redis on 127.0.0.1:6379)", () => {})
  })
} else {
  const url = location.url
  runAdapterConformance("redis", async () => {
    const prefix = uniquePrefix("conformance")
    const raw = new Redis(url)
    return {
      adapter: redisStorage({ url, prefix, log: () => {} }),
      backdoor: redisBackdoor(raw, prefix),
      close: async () => {
        await dropPrefix(raw, prefix)
        await raw.quit()
        await location.stop()
      }
    }
  })
}
