/**
 * EventFeed: "something new up to seq N" hints for a run, across processes.
 * A hint is never data: readers re-read the log after their last seq, so a
 * lost or duplicated hint costs latency, never an event.
 */
import { Context, type Effect, type Scope, type Stream } from "effect"
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
