/**
 * One log reader per run per process, shared by every subscriber of that run
 * (SSE streams, in-process iterators). The first subscriber of a run starts a
 * reader — a feed subscription plus a store read after its last seq on every
 * hint or poll tick — and the last one leaving stops it (reference counted).
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
  Schedule,
  Scope,
  Stream
} from "effect"
import { EngineConfig } from "./EngineConfig.js"
import { type StorageError, storageUnavailable } from "./Errors.js"
import { EventFeed } from "./ports/EventFeed.js"
import { RunStore } from "./ports/RunStore.js"
import { isTerminalEventType, type RunEvent, toRunEvent } from "./RunEvent.js"

/** Events the shared window holds: joiners this close to the tail never read the store. */
export const SHARED_WINDOW_EVENTS = 256
/** Events per store read. */
const PAGE = 500

/** Called once when the reader next publishes: with null, or with the error its read failed with. */
type Waiter = (outcome: StorageError | null) => void

/** What one run's reader publishes; subscribers only read it. */
interface SharedTail {
  /** The highest seq read contiguously from the store. */
  last: number
  /** The most recent events, contiguous, the last of them at seq `last` (or none yet). */
  window: ReadonlyArray<RunEvent>
  /** The terminal event was read: nothing follows `last`. */
  ended: boolean
  /** Caught-up subscribers waiting for `last` to move (or a read to fail); called and cleared each time. */
  waiters: Set<Waiter>
}

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

/** Starts `runId`'s reader in the scope of its entry: it stops when the last subscriber leaves. */
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
    const tail: SharedTail = { last: start, window: [], ended: false, waiters: new Set() }

    const wakeSubscribers = (outcome: StorageError | null) => {
      const woken = tail.waiters
      tail.waiters = new Set()
      for (const waiter of woken) waiter(outcome)
    }
    const readNew = Effect.suspend(() =>
      readContiguous(store, runId, tail.last, Number.POSITIVE_INFINITY)
    ).pipe(
      Effect.match({
        // Subscribers waiting now end (and resume by id); the reader tries again on the next wake.
        onFailure: (error) => wakeSubscribers(error),
        onSuccess: (events) => {
          if (events.length === 0) return
          const window = [...tail.window, ...events]
          tail.window = window.length > SHARED_WINDOW_EVENTS ? window.slice(-SHARED_WINDOW_EVENTS) : window
          tail.last = events.at(-1)!.seq
          tail.ended = isTerminalEventType(events.at(-1)!.type)
          wakeSubscribers(null)
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

/**
 * One subscriber's position in a run's shared tail. Not an Effect stream, so
 * that a plain async iterator (one per SSE connection) costs a few objects,
 * not a fiber and a channel: each step is synchronous except a wait for the
 * reader (`onChange`) and a read of a gap from the store (`readGap`).
 */
export class RunEventCursor {
  constructor(
    private readonly tail: SharedTail,
    private readonly store: RunStore["Type"],
    private readonly runId: string,
    /** The seq of the last event taken. */
    public position: number
  ) {}

  /** The events after `position` that the shared window holds, taken; null when there are none there. */
  takeShared(): ReadonlyArray<RunEvent> | null {
    const { last, window } = this.tail
    if (this.position >= last) return null
    const windowStart = last - window.length + 1
    if (this.position + 1 < windowStart) return null
    const events = window.slice(this.position + 1 - windowStart)
    this.position = last
    return events
  }

  /** The next events are older than the shared window: `readGap` reads them. */
  get behind(): boolean {
    const { last, window } = this.tail
    return this.position < last && this.position + 1 < last - window.length + 1
  }

  /** The terminal event was taken: nothing follows. */
  get ended(): boolean {
    return this.tail.ended && this.position >= this.tail.last
  }

  /**
   * Calls `waiter` once when the reader publishes next (null) or its read
   * fails (the error); the returned function cancels that.
   */
  onChange(waiter: Waiter): () => void {
    const waiters = this.tail.waiters
    waiters.add(waiter)
    return () => {
      waiters.delete(waiter)
    }
  }

  /** Reads a page of the gap from the store and takes it. */
  get readGap(): Effect.Effect<ReadonlyArray<RunEvent>, StorageError> {
    return Effect.flatMap(readContiguous(this.store, this.runId, this.position, 1), (events) => {
      // The reader read past here, so the store has these events: none is a broken store.
      if (events.length === 0)
        return Effect.fail(storageUnavailable("The run's events could not be read in order; resume by id."))
      this.position = events.at(-1)!.seq
      return Effect.succeed(events)
    })
  }
}

/** One run's reader and how many subscribers it has. */
interface ReaderEntry {
  refs: number
  readonly tail: Deferred.Deferred<SharedTail, StorageError>
  /** The reader's fiber and feed subscription live in it. */
  readonly scope: Scope.CloseableScope
}

export interface RunEventReadersShape {
  /**
   * Joins (or starts) `runId`'s shared reader for the scope's life: a cursor
   * after `afterSeq`. The last cursor's scope closing stops the reader.
   */
  readonly open: (runId: string, afterSeq: number) => Effect.Effect<RunEventCursor, StorageError, Scope.Scope>
  /**
   * `runId`'s events after `afterSeq`, each once, in order, then live ones,
   * ending after the terminal event: a cursor as an Effect stream.
   */
  readonly follow: (runId: string, afterSeq: number) => Stream.Stream<RunEvent, StorageError>
}

/** The next events for `cursor`, waiting for the reader when it has them all; Option.none at the end. */
const pullCursor = (
  cursor: RunEventCursor
): Effect.Effect<Chunk.Chunk<RunEvent>, Option.Option<StorageError>> =>
  Effect.suspend(() => {
    const shared = cursor.takeShared()
    if (shared !== null) return Effect.succeed(Chunk.unsafeFromArray(shared))
    if (cursor.behind)
      return Effect.mapBoth(cursor.readGap, { onFailure: Option.some, onSuccess: Chunk.unsafeFromArray })
    if (cursor.ended) return Effect.fail(Option.none())
    return Effect.flatMap(
      Effect.async<StorageError | null>((resume) =>
        Effect.sync(cursor.onChange((e) => resume(Effect.succeed(e))))
      ),
      (error) => (error === null ? pullCursor(cursor) : Effect.fail(Option.some(error)))
    )
  })

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
        const captured = yield* Effect.context<RunStore | EventFeed | EngineConfig>()
        const entries = new Map<string, ReaderEntry>()
        yield* Effect.addFinalizer(() =>
          Effect.forEach(entries.values(), (entry) => Scope.close(entry.scope, Exit.void), { discard: true })
        )
        /**
         * Joins `runId`'s entry, creating it and starting its reader when there
         * is none. (Not `RcMap`: its `get` looks the key up before taking its
         * lock, so concurrent first subscribers each started a reader.) The
         * look-up and the insert happen in one synchronous step.
         */
        const join = (runId: string) =>
          Effect.contextWithEffect((caller: Context.Context<never>) => {
            const existing = entries.get(runId)
            if (existing !== undefined) {
              existing.refs++
              return Effect.succeed(existing)
            }
            const entry: ReaderEntry = {
              refs: 1,
              tail: Deferred.unsafeMake<SharedTail, StorageError>(FiberId.none),
              scope: Effect.runSync(Scope.make())
            }
            entries.set(runId, entry)
            // The caller's services win, as a layer provided later would (a test's feed, say).
            return startReader(runId).pipe(
              Scope.extend(entry.scope),
              Effect.provide(Context.merge(captured, caller)),
              Effect.exit,
              Effect.flatMap((exit) => Deferred.done(entry.tail, exit)),
              // `join` runs as an acquire (uninterruptible); the reader must stay interruptible.
              Effect.interruptible,
              Effect.forkDaemon,
              Effect.as(entry)
            )
          })
        const leave = (runId: string, entry: ReaderEntry) =>
          Effect.suspend(() => {
            entry.refs--
            if (entry.refs > 0) return Effect.void
            if (entries.get(runId) === entry) entries.delete(runId)
            return Scope.close(entry.scope, Exit.void)
          })
        /**
         * Joins and registers the leave on the caller's scope in one
         * uninterruptible step. (Not `acquireRelease`: it keeps a copy of the
         * fiber's refs per subscriber for its release, which `leave` needs not.)
         */
        const open = (runId: string, afterSeq: number) =>
          Effect.flatMap(Effect.scope, (scope) =>
            Effect.uninterruptible(
              Effect.tap(join(runId), (entry) => Scope.addFinalizer(scope, leave(runId, entry)))
            )
          ).pipe(
            Effect.flatMap((entry) => Deferred.await(entry.tail)),
            Effect.map((tail) => new RunEventCursor(tail, store, runId, afterSeq))
          )
        return {
          open,
          follow: (runId, afterSeq) =>
            Stream.unwrapScoped(
              Effect.map(open(runId, afterSeq), (cursor) =>
                Stream.repeatEffectChunkOption(pullCursor(cursor)).pipe(
                  Stream.takeUntil((e) => isTerminalEventType(e.type))
                )
              )
            )
        }
      })
    )
}
