/**
 * EventFeed: "something new up to seq N" hints for a run, across processes.
 * A hint is never data: readers re-read the log after their last seq, so a
 * lost or duplicated hint costs latency, never an event.
 */
import { Context, Effect, Queue, type Scope, Stream } from "effect"
import type { StorageError } from "../Errors.js"

export interface EventFeedEncoded {
  /**
   * Listens for hints about `runId`. The subscription is live when the effect
   * succeeds (so a read made afterwards cannot miss a later append) and ends
   * with the scope. The stream emits the newest seq the adapter knows of.
   */
  readonly subscribe: (runId: string) => Effect.Effect<Stream.Stream<number>, StorageError, Scope.Scope>
}

export class EventFeed extends Context.Tag("@baton/core/EventFeed")<EventFeed, EventFeedEncoded>() {}

/**
 * The in-process half of a feed: who in this process listens to which run.
 * An adapter publishes hints from wherever they come (its own writes,
 * LISTEN/NOTIFY, a change stream, a poll); each subscriber gets a hint only
 * when it says something newer than the last one it got.
 */
export interface HintHub {
  /** `EventFeedEncoded.subscribe`: registered when the effect succeeds, removed with the scope. */
  readonly subscribe: EventFeedEncoded["subscribe"]
  /** Hands `seq` to the run's subscribers that have not been told of it or of a newer one. */
  readonly publish: (runId: string, seq: number) => void
  /** The runs someone in this process subscribes to now. */
  readonly runIds: () => ReadonlyArray<string>
}

interface Listener {
  /** Wakes the subscriber; it then reads `delivered`. */
  readonly offer: () => void
  /** The newest seq handed over. */
  delivered: number
}

export const makeHintHub = (): HintHub => {
  const listeners = new Map<string, Set<Listener>>()
  return {
    subscribe: (runId) =>
      Effect.gen(function* () {
        // Only the newest hint matters: the queue holds one pending wake, and a wake
        // reads the newest seq delivered. (`unsafeOffer` ignores a sliding strategy:
        // a full sliding queue would drop the newer hint, not the older.)
        const wakes = yield* Queue.dropping<void>(1)
        const listener: Listener = {
          offer: () => {
            Queue.unsafeOffer(wakes, undefined)
          },
          delivered: 0
        }
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            const set = listeners.get(runId) ?? new Set()
            set.add(listener)
            listeners.set(runId, set)
          }),
          () =>
            Effect.sync(() => {
              const set = listeners.get(runId)
              set?.delete(listener)
              if (set?.size === 0) listeners.delete(runId)
            })
        )
        return Stream.fromQueue(wakes).pipe(Stream.map(() => listener.delivered))
      }),
    publish: (runId, seq) => {
      for (const listener of listeners.get(runId) ?? [])
        if (seq > listener.delivered) {
          listener.delivered = seq
          listener.offer()
        }
    },
    runIds: () => [...listeners.keys()]
  }
}
