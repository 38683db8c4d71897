/**
 * The event feed's machinery, independent of the driver: subscribers by run
 * id, a poller that reads the newest seq of every subscribed run in one
 * query, and a loop that keeps a change stream open.
 *
 * Change-stream mode: each insert into `events` is a hint for its run. When
 * the stream breaks, the loop reopens it after the last resume token (or
 * fresh, when the server no longer has that point of its history); while it
 * is down the poller runs, and every (re)open is followed by one poll. So a
 * hint lost with a dropped stream is replaced by the run's `last_seq`:
 * latency, never a lost event. Poll mode: the poller alone, every interval.
 */
import { type EventFeedEncoded, makeHintHub } from "@baton/core"

/** One change: run `runId` has an event at `seq`. */
export interface Change {
  readonly runId: string
  readonly seq: number
}

/** An open change stream. */
export interface ChangeCursor {
  /** The next change; null once the cursor was closed. Rejects when the stream broke. */
  readonly next: () => Promise<Change | null>
  /** Where to resume after the last change returned (null before the first). */
  readonly resumeToken: () => unknown
  readonly close: () => Promise<void>
}

export interface HintSources {
  /** The newest seq of each of these runs (runs that do not exist are left out). */
  readonly lastSeqs: (runIds: ReadonlyArray<string>) => Promise<ReadonlyArray<Change>>
  /**
   * Opens a change stream on event inserts, after `resumeAfter` when given;
   * resolves once the server established it. Absent in poll mode.
   */
  readonly openChanges?: (resumeAfter: unknown) => Promise<ChangeCursor>
  /** True when a failed open means the resume point is gone and the stream must start afresh. */
  readonly isHistoryLost?: (cause: unknown) => boolean
}

export interface HintFeedOptions {
  readonly pollIntervalMs: number
  /** Delay before reopening a broken change stream: doubles from `min` up to `max`. */
  readonly reopenBackoffMs?: { readonly min: number; readonly max: number }
}

export interface HintFeed {
  readonly feed: EventFeedEncoded
  /** Starts the poller and, with a change-stream source, opens the stream (resolves once it is open). */
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
  /** Whether a change stream is open right now (false in poll mode). */
  readonly streaming: () => boolean
}

export const makeHintFeed = (sources: HintSources, options: HintFeedOptions): HintFeed => {
  const hints = makeHintHub()
  const backoff = options.reopenBackoffMs ?? { min: 100, max: 5_000 }
  let timer: NodeJS.Timeout | undefined
  let polling = false
  let stopped = false
  let cursor: ChangeCursor | null = null
  let loop: Promise<void> | null = null
  /** Ends the reopen backoff early when the feed stops. */
  let wake: (() => void) | null = null

  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms)
      timer.unref()
      wake = () => {
        clearTimeout(timer)
        resolve()
      }
    })

  // A poll asked for while one runs (the one after a reopen) must run after it, not be dropped:
  // the running one may have read before the stream was open again.
  let pollAgain = false
  const poll = async (): Promise<void> => {
    if (polling) {
      pollAgain = true
      return
    }
    const runIds = hints.runIds()
    if (runIds.length === 0) return
    polling = true
    try {
      for (const change of await sources.lastSeqs(runIds)) hints.publish(change.runId, change.seq)
    } catch {
      // The store is away: the next tick tries again, and readers keep their own periodic re-read.
    } finally {
      polling = false
    }
    if (pollAgain) {
      pollAgain = false
      await poll()
    }
  }

  /** Opens the stream after `token` (or fresh), then polls once for what happened while it was shut. */
  const open = async (openChanges: NonNullable<HintSources["openChanges"]>, token: unknown) => {
    const opened = await openChanges(token)
    cursor = opened
    await poll()
    return opened
  }

  /** Keeps a change stream open until stop(); `first` is the stream start() opened. */
  const follow = async (openChanges: NonNullable<HintSources["openChanges"]>, first: ChangeCursor) => {
    let current: ChangeCursor | null = first
    let token: unknown = null
    let delay = backoff.min
    while (!stopped) {
      try {
        if (current === null) {
          try {
            current = await open(openChanges, token)
          } catch (cause) {
            // The server dropped the history after our token: start afresh (the poll covers the gap).
            if (token === null || sources.isHistoryLost?.(cause) !== true) throw cause
            token = null
            current = await open(openChanges, null)
          }
          if (stopped) {
            // stop() ran while this stream was opening: it could not close it.
            await current.close().catch(() => {})
            break
          }
        }
        for (;;) {
          const change = await current.next()
          if (change === null) break
          token = current.resumeToken()
          // The stream works: the next break is retried promptly again.
          delay = backoff.min
          hints.publish(change.runId, change.seq)
        }
        if (stopped) break
        // Closed under us: reopen after the last token, with the same backoff as after an error.
        throw new Error("the change stream closed")
      } catch {
        if (current !== null) token = current.resumeToken() ?? token
        await current?.close().catch(() => {})
        current = null
        cursor = null
        if (stopped) break
        await pause(delay)
        delay = Math.min(delay * 2, backoff.max)
      }
    }
  }

  const feed: EventFeedEncoded = {
    subscribe: hints.subscribe
  }

  return {
    feed,
    start: async () => {
      const openChanges = sources.openChanges
      if (openChanges !== undefined) {
        const first = await openChanges(null)
        cursor = first
        loop = follow(openChanges, first)
      }
      timer = setInterval(() => {
        // With a stream open, hints come from it; the poller covers the time it is down.
        if (cursor === null) void poll()
      }, options.pollIntervalMs)
      timer.unref()
    },
    stop: async () => {
      stopped = true
      clearInterval(timer)
      wake?.()
      await cursor?.close().catch(() => {})
      await loop
    },
    streaming: () => cursor !== null
  }
}
