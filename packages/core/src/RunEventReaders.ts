/**
 * One log reader per run per process, shared by every subscriber of that run
 * (SSE streams, in-process iterators). The first subscriber of a run starts a
 * reader — a feed subscription plus a store read after its last seq on every
 * hint or poll tick — and the last one leaving stops it (an `RcMap` entry).
 * The reader keeps the run's most recent events in a bounded window; each
 * subscriber pulls from that window at its own pace, so a hint costs one store
 * read however many subscribers there are, and a slow subscriber holds no
 * queue of its own. A subscriber behind the window (a late joiner, a resume by
 * Last-Event-ID, one that fell behind) reads that gap from the store itself.
 */
import {
  Chunk,
  Context,
  Deferred,
  Effect,
  Exit,
  FiberId,
  Layer,
  Option,
  RcMap,
  Schedule,
  type Scope,
  Stream
} from "effect"
import { EngineConfig } from "./EngineConfig.js"
import type { StorageError } from "./Errors.js"
import { EventFeed } from "./ports/EventFeed.js"
import { RunStore } from "./ports/RunStore.js"
import { isTerminalEventType, type RunEvent, toRunEvent } from "./RunEvent.js"

/** Events the shared window holds: joiners this close to the tail never read the store. */
export const SHARED_WINDOW_EVENTS = 256
/** Events per store read. */
const PAGE = 500

/** What one run's reader publishes; subscribers only read it. */
interface SharedTail {
  /** The highest seq read contiguously from the store. */
  last: number
  /** The most recent events, contiguous, the last of them at seq `last` (or none yet). */
  window: ReadonlyArray<RunEvent>
  /** The terminal event was read: nothing follows `last`. */
  ended: boolean
  /**
   * Completed, and replaced, whenever `last` moves or a read fails: a
   * subscriber that has everything up to `last` waits on it.
   */
  pulse: Deferred.Deferred<void, StorageError>
}

const newPulse = () => Deferred.unsafeMake<void, StorageError>(FiberId.none)

/**
 * Reads `runId`'s log after `after`, contiguous only (never past a seq not yet
 * reached), up to `pages` pages of `PAGE`.
 */
const readContiguous = (
  store: RunStore["Type"],
  runId: string,
  after: number,
  pages: number
): Effect.Effect<Array<RunEvent>, StorageError> =>
  Effect.gen(function* () {
    const out: RunEvent[] = []
    let last = after
    for (let page = 0; page < pages; page++) {
      const rows = yield* store.readEvents(runId, last, PAGE)
      for (const row of rows) {
        if (row.seq !== last + 1) return out
        last = row.seq
        out.push(toRunEvent(row))
      }
      if (rows.length < PAGE) return out
    }
    return out
  })

/** Starts `runId`'s reader in the RcMap entry's scope: it stops when the entry is released. */
const startReader = (
  runId: string
): Effect.Effect<SharedTail, StorageError, RunStore | EventFeed | EngineConfig | Scope.Scope> =>
  Effect.gen(function* () {
    const store = yield* RunStore
    const feed = yield* EventFeed
    const config = yield* EngineConfig
    // Live before the first read, so no append after that read goes unhinted.
    const hints = yield* feed.subscribe(runId)
    const run = yield* store.get(runId)
    const start = Math.max(0, (run?.last_seq ?? 0) - SHARED_WINDOW_EVENTS)
    const tail: SharedTail = { last: start, window: [], ended: false, pulse: newPulse() }

    const wakeSubscribers = (exit: Exit.Exit<void, StorageError>) => {
      const woken = tail.pulse
      tail.pulse = newPulse()
      Deferred.unsafeDone(woken, exit)
    }
    const readNew = Effect.suspend(() =>
      readContiguous(store, runId, tail.last, Number.POSITIVE_INFINITY)
    ).pipe(
      Effect.match({
        // Subscribers waiting now end (and resume by id); the reader tries again on the next wake.
        onFailure: (error) => wakeSubscribers(Exit.fail(error)),
        onSuccess: (events) => {
          if (events.length === 0) return
          const window = [...tail.window, ...events]
          tail.window = window.length > SHARED_WINDOW_EVENTS ? window.slice(-SHARED_WINDOW_EVENTS) : window
          tail.last = events.at(-1)!.seq
          tail.ended = isTerminalEventType(events.at(-1)!.type)
          wakeSubscribers(Exit.void)
        }
      })
    )
    const wakes = Stream.concat(
      Stream.make(undefined),
      Stream.merge(
        hints.pipe(Stream.filter((seq) => seq > tail.last)),
        // The first poll comes one interval after the first read, not with it.
        Stream.fromSchedule(Schedule.spaced(`${config.feedPollIntervalMs} millis`))
      )
    )
    yield* wakes.pipe(
      Stream.mapEffect(() => readNew),
      Stream.takeWhile(() => !tail.ended),
      Stream.runDrain,
      Effect.forkScoped
    )
    return tail
  })

export interface RunEventReadersShape {
  /**
   * `runId`'s events after `afterSeq`, each once, in order, then live ones,
   * ending after the terminal event. Subscribing joins (or starts) the run's
   * shared reader; ending the stream leaves it.
   */
  readonly follow: (runId: string, afterSeq: number) => Stream.Stream<RunEvent, StorageError>
}

export class RunEventReaders extends Context.Tag("@baton/core/RunEventReaders")<
  RunEventReaders,
  RunEventReadersShape
>() {
  /** The readers of one engine runtime; they read with the store, feed and config provided to it. */
  static readonly layer: Layer.Layer<RunEventReaders, never, RunStore | EventFeed | EngineConfig> =
    Layer.scoped(
      RunEventReaders,
      Effect.gen(function* () {
        const store = yield* RunStore
        const readers = yield* RcMap.make({ lookup: startReader })
        return {
          follow: (runId, afterSeq) =>
            Stream.unwrapScoped(
              Effect.map(RcMap.get(readers, runId), (tail) => {
                let mine = afterSeq
                const pull: Effect.Effect<
                  Chunk.Chunk<RunEvent>,
                  Option.Option<StorageError>
                > = Effect.suspend(() => {
                  if (mine < tail.last) {
                    const windowStart = tail.last - tail.window.length + 1
                    if (mine + 1 >= windowStart) {
                      const events = tail.window.slice(mine + 1 - windowStart)
                      mine = tail.last
                      return Effect.succeed(Chunk.unsafeFromArray(events))
                    }
                    // Behind the window: this subscriber's gap comes from the store.
                    return readContiguous(store, runId, mine, 1).pipe(
                      Effect.mapError(Option.some),
                      Effect.flatMap((events) => {
                        if (events.length === 0) return awaitPulse
                        mine = events.at(-1)!.seq
                        return Effect.succeed(Chunk.unsafeFromArray(events))
                      })
                    )
                  }
                  return tail.ended ? Effect.fail(Option.none()) : awaitPulse
                })
                const awaitPulse: Effect.Effect<
                  Chunk.Chunk<RunEvent>,
                  Option.Option<StorageError>
                > = Effect.suspend(() => Deferred.await(tail.pulse)).pipe(
                  Effect.mapError(Option.some),
                  Effect.zipRight(pull)
                )
                return Stream.repeatEffectChunkOption(pull).pipe(
                  Stream.takeUntil((e) => isTerminalEventType(e.type))
                )
              })
            )
        }
      })
    )
}
