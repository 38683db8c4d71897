/**
 * EventFeed over Redis pub/sub: the append script publishes a run's new
 * last_seq on the run's channel; one dedicated subscriber connection per
 * adapter carries every subscription. A hint is never data, so a hint lost
 * while the subscriber was disconnected costs only this: after every
 * reconnect the feed resubscribes, then reads each run's last_seq and emits
 * it, so every stream re-reads its log and none stalls.
 */
import type { EventFeedEncoded } from "@baton/core"
import { Effect, Queue, Stream } from "effect"
import type { Redis } from "ioredis"
import { attempt } from "./internal/Errors.js"
import type { KeyLayout } from "./internal/Keys.js"
import type { RedisClient } from "./internal/Scripts.js"

type Listener = (seq: number) => void

interface Channel {
  readonly runId: string
  readonly listeners: Set<Listener>
  /** Settles when the SUBSCRIBE reply came back: the channel is live. */
  readonly live: Promise<unknown>
}

export const makeRedisEventFeed = (
  subscriber: Redis,
  client: RedisClient,
  keys: KeyLayout
): EventFeedEncoded => {
  const channels = new Map<string, Channel>()

  const emit = (channel: string, seq: number) => {
    if (!Number.isFinite(seq)) return
    for (const listener of channels.get(channel)?.listeners ?? []) listener(seq)
  }

  subscriber.on("message", (channel: string, message: string) => emit(channel, Number(message)))

  /** After a reconnect: subscribe again, then make every stream re-read from the run's last_seq. */
  const recover = async () => {
    const names = [...channels.keys()]
    if (names.length === 0) return
    await subscriber.subscribe(...names)
    await Promise.all(
      names.map(async (name) => {
        const runId = channels.get(name)?.runId
        if (runId === undefined) return
        const raw = await client.hget(keys.run(runId), "last_seq")
        const seq = raw === null ? null : Number(JSON.parse(raw))
        // A run we cannot read still gets a wake-up: the reader re-reads its log either way.
        emit(name, seq ?? Number.MAX_SAFE_INTEGER)
      })
    )
  }
  subscriber.on("ready", () => {
    recover().catch(() => {
      // The connection dropped again; the next "ready" retries.
    })
  })

  const add = async (runId: string, listener: Listener) => {
    const name = keys.feed(runId)
    let channel = channels.get(name)
    if (channel === undefined) {
      channel = { runId, listeners: new Set(), live: subscriber.subscribe(name) }
      channels.set(name, channel)
    }
    channel.listeners.add(listener)
    try {
      await channel.live
    } catch (error) {
      remove(runId, listener)
      throw error
    }
  }

  const remove = (runId: string, listener: Listener) => {
    const name = keys.feed(runId)
    const channel = channels.get(name)
    if (channel === undefined) return
    channel.listeners.delete(listener)
    if (channel.listeners.size === 0) {
      channels.delete(name)
      subscriber.unsubscribe(name).catch(() => {
        // Gone with the connection anyway; a reconnect resubscribes only live channels.
      })
    }
  }

  return {
    subscribe: (runId) =>
      Effect.gen(function* () {
        // Only the newest hint matters: one pending wake, and a wake hands over the highest seq heard
        // since the last one. (`unsafeOffer` ignores a sliding strategy: a full sliding queue of hints
        // dropped the newer one, and a busy reader then waited for its poll.)
        const wakes = yield* Queue.dropping<void>(1)
        let highest: number | null = null
        const listener: Listener = (seq) => {
          highest = highest === null ? seq : Math.max(highest, seq)
          Queue.unsafeOffer(wakes, undefined)
        }
        yield* Effect.acquireRelease(
          attempt(() => add(runId, listener)),
          () => Effect.sync(() => remove(runId, listener))
        )
        return Stream.fromQueue(wakes).pipe(
          Stream.map(() => {
            const seq = highest ?? 0
            highest = null
            return seq
          })
        )
      })
  }
}
