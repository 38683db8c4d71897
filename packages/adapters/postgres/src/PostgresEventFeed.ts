/**
 * EventFeed over Postgres. Appends NOTIFY `run_id:seq` on one channel per
 * schema; each process LISTENs on one dedicated connection and fans hints out
 * to its subscribers. While that connection is down, and always in poll-only
 * mode (transaction-pooling proxies cannot LISTEN), one query per interval
 * reads the newest seq of every subscribed run. After a reconnect that query
 * runs at once: whatever was appended meanwhile is re-read, never lost.
 */
import { type EventFeedEncoded, makeHintHub } from "@baton/core"
import type { SqlExecutor } from "./Executor.js"
import type { Statements } from "./Statements.js"

export type FeedMode = "listen" | "poll"

export interface FeedOptions {
  readonly mode: FeedMode
  readonly channel: string
  /** How often subscribed runs are polled when no LISTEN connection is up. */
  readonly pollIntervalMs: number
}

export interface PostgresEventFeed {
  readonly feed: EventFeedEncoded
  /** Starts listening (resolves once LISTEN is in place) and the poller. */
  readonly start: () => Promise<void>
  readonly stop: () => Promise<void>
}

export const makeEventFeed = (db: SqlExecutor, st: Statements, options: FeedOptions): PostgresEventFeed => {
  const hints = makeHintHub()
  let listening = false
  let unlisten: (() => Promise<void>) | null = null
  let timer: NodeJS.Timeout | undefined
  let polling = false
  // A poll asked for while one runs (a reconnect's re-read) must run after it, not be dropped.
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
      const rows = await db.query<{ id: string; last_seq: number }>(st.lastSeqs, [runIds])
      for (const row of rows) hints.publish(row.id, row.last_seq)
    } catch {
      // The store is away: the next tick tries again, and readers keep their own poll.
    } finally {
      polling = false
    }
    if (pollAgain) {
      pollAgain = false
      await poll()
    }
  }

  const onNotification = (payload: string) => {
    const colon = payload.lastIndexOf(":")
    const seq = Number(payload.slice(colon + 1))
    if (colon > 0 && Number.isInteger(seq)) hints.publish(payload.slice(0, colon), seq)
  }

  const feed: EventFeedEncoded = { subscribe: hints.subscribe }

  return {
    feed,
    start: async () => {
      if (options.mode === "listen") {
        unlisten = await db.listen(options.channel, {
          onNotification,
          onLost: () => {
            listening = false
          },
          onListening: () => {
            listening = true
            void poll()
          }
        })
        listening = true
      }
      timer = setInterval(() => {
        if (!listening) void poll()
      }, options.pollIntervalMs)
      timer.unref()
    },
    stop: async () => {
      clearInterval(timer)
      await unlisten?.()
    }
  }
}
