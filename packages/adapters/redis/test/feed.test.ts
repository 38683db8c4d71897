/**
 * The pub/sub feed hands a busy subscriber the newest hint: hints that arrive
 * while it is not reading collapse into one wake carrying the highest seq, and
 * a later, lower hint (after a reconnect's "re-read everything" wake) still
 * wakes it.
 */
import { redisStorage } from "@baton/adapter-redis"
import { EventFeed } from "@baton/core"
import { Chunk, Effect, Exit, Scope, Stream } from "effect"
import { Redis } from "ioredis"
import { afterAll, describe, expect, it } from "vitest"
import { dropPrefix, findRedis, uniquePrefix } from "./support/redis.js"

const location = await findRedis()

describe.skipIf(location === null)(
  "redis feed (skipped only when no Redis is found: set BATON_TEST_REDIS_URL)",
  () => {
    const url = location?.url ?? ""
    const prefix = uniquePrefix("feed")
    const storage = redisStorage({ url, prefix })
    const publisher = new Redis(url)
    afterAll(async () => {
      await dropPrefix(publisher, prefix)
      publisher.disconnect()
    })

    it("hands a subscriber that was busy the highest hint, and wakes it again for any later one", async () => {
      const runId = "run_01JAAAAAAAAAAAAAAAAAAAAAAA"
      const channel = `${prefix}:feed:{${runId}}`
      // Messages reach the one subscriber connection in publish order: once this run's hint arrives,
      // every hint published before it has arrived too.
      const markerRunId = "run_01JBBBBBBBBBBBBBBBBBBBBBBB"
      const markerChannel = `${prefix}:feed:{${markerRunId}}`
      const program = Effect.gen(function* () {
        const feed = yield* EventFeed
        const scope = yield* Scope.make()
        const hints = yield* Scope.extend(feed.subscribe(runId), scope)
        const pull = yield* Scope.extend(Stream.toPull(hints), scope)
        const markers = yield* Scope.extend(feed.subscribe(markerRunId), scope)
        const pullMarker = yield* Scope.extend(Stream.toPull(markers), scope)
        // Three hints while nobody reads: one wake, the newest seq.
        for (const seq of [5, 6, 7]) yield* Effect.promise(() => publisher.publish(channel, String(seq)))
        yield* Effect.promise(() => publisher.publish(markerChannel, "1"))
        yield* pullMarker.pipe(Effect.timeout("5 seconds"))
        const first = yield* pull.pipe(Effect.timeout("5 seconds"))
        expect(Chunk.toReadonlyArray(first)).toEqual([7])
        // A higher "re-read" wake, then an ordinary one: both wake the reader.
        yield* Effect.promise(() => publisher.publish(channel, String(Number.MAX_SAFE_INTEGER)))
        const second = yield* pull.pipe(Effect.timeout("5 seconds"))
        expect(Chunk.toReadonlyArray(second)).toEqual([Number.MAX_SAFE_INTEGER])
        yield* Effect.promise(() => publisher.publish(channel, "8"))
        const third = yield* pull.pipe(Effect.timeout("5 seconds"))
        expect(Chunk.toReadonlyArray(third)).toEqual([8])
        yield* Scope.close(scope, Exit.void)
      })
      await Effect.runPromise(Effect.provide(program, storage.layer))
    })
  }
)
