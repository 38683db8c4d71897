/**
 * The server on the machine's Redis (found by locateService; skipped with a
 * loud warning when there is none, unless BATON_TEST_REQUIRE names redis),
 * under a key prefix of its own that is deleted afterwards.
 */
import { randomBytes } from "node:crypto"
import { locateService } from "@baton/adapter-conformance"
import { Redis } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"
import type { RunningServer } from "../src/Server.js"
import { migrateStorage } from "../src/ServerStorage.js"
import { api, configFor, runIdOf, serverHarness, waitFor } from "./support.js"

const located = await locateService("redis")
afterAll(async () => {
  await located?.stop()
})

const { start } = serverHarness()

/** Deletes every key under `prefix` (SCAN, never KEYS). */
const dropPrefix = async (url: string, prefix: string): Promise<void> => {
  const client = new Redis(url, { lazyConnect: true })
  try {
    await client.connect()
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500)
      cursor = next
      if (keys.length > 0) await client.del(...keys)
    } while (cursor !== "0")
  } finally {
    client.disconnect()
  }
}

describe("the server on Redis", () => {
  const withRedis = located === null ? it.skip : it
  const name = located === null ? " (skipped: no Redis found; see the warning above)" : ""

  withRedis(`starts under a fresh prefix, runs the demo handler, and restarts on it${name}`, async () => {
    if (located === null) return
    const prefix = `baton-test:server:${randomBytes(6).toString("hex")}`
    const env = {
      BATON_STORAGE: "redis",
      BATON_REDIS_URL: located.url,
      BATON_REDIS_PREFIX: prefix,
      BATON_WORKER_CONCURRENCY: "2"
    }
    const opened: RunningServer[] = []
    try {
      const first = await start(env)
      opened.push(first.server)
      expect(first.lines[0]).toBe(
        `Storage: redis (${new URL(located.url).hostname}:${new URL(located.url).port || "6379"}, prefix ${prefix}).`
      )
      const key = first.server.createdKey
      if (key === null) throw new Error("a fresh prefix holds no key: one must be created")
      const runId = runIdOf(await api(first.server, key, "/runs", { input: { user_query: "on redis?" } }))
      await waitFor(first.server.engine, runId, "run.worker.succeeded")
      const events = await api(first.server, key, `/runs/${runId}/events?after_seq=0&limit=1000`)
      await first.server.close()

      const second = await start(env)
      opened.push(second.server)
      expect(second.server.createdKey).toBeNull()
      expect((await api(second.server, key, `/runs/${runId}`)).body).toMatchObject({ status: "succeeded" })
      expect(await api(second.server, key, `/runs/${runId}/events?after_seq=0&limit=1000`)).toEqual(events)
      await second.server.close()

      // Redis keeps no schema: `baton migrate` has nothing to do.
      expect(await migrateStorage(configFor(env))).toMatchObject({ applied: [] })
    } finally {
      await Promise.all(opened.map((s) => s.close()))
      await dropPrefix(located.url, prefix)
    }
  })
})
