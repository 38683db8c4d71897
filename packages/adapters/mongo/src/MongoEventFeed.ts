/**
 * The EventFeed's MongoDB sources: a change stream on inserts into `events`
 * (one per process, fanned out to subscribers in memory), and the poll query
 * (`last_seq` of every subscribed run, one query per interval).
 */
import { type ChangeStream, type ChangeStreamDocument, MongoError } from "mongodb"
import type { Collections } from "./Collections.js"
import type { EventDocument } from "./Documents.js"
import type { Change, ChangeCursor, HintSources } from "./HintFeed.js"

/** `auto`: change streams when the server has them, else polling. */
export type FeedMode = "auto" | "changeStream" | "poll"

// Only what a hint needs travels: the kind of change, the run id and the seq. `_id` (the
// resume token) stays in by default, as a change stream requires.
const PIPELINE = [
  { $match: { operationType: "insert" } },
  { $project: { operationType: 1, "fullDocument.run_id": 1, "fullDocument.seq": 1 } }
]

/** How long the server holds a getMore open waiting for a change. */
const MAX_AWAIT_MS = 1_000

/** ChangeStreamHistoryLost, ChangeStreamFatalError, and the old "resume point not found" code. */
const HISTORY_LOST_CODES: ReadonlySet<number> = new Set([286, 280, 136])

export const isHistoryLost = (cause: unknown): boolean =>
  cause instanceof MongoError && typeof cause.code === "number" && HISTORY_LOST_CODES.has(cause.code)

const cursorOf = (stream: ChangeStream<EventDocument>, buffered: Change | null): ChangeCursor => {
  let pending = buffered
  return {
    next: async () => {
      if (pending !== null) {
        const change = pending
        pending = null
        return change
      }
      if (stream.closed) return null
      try {
        for (;;) {
          const change = toChange(await stream.next())
          if (change !== null) return change
        }
      } catch (cause) {
        if (stream.closed) return null
        throw cause
      }
    },
    resumeToken: () => stream.resumeToken ?? null,
    close: () => stream.close()
  }
}

const toChange = (doc: ChangeStreamDocument<EventDocument>): Change | null => {
  if (doc.operationType !== "insert") return null
  return { runId: doc.fullDocument.run_id, seq: doc.fullDocument.seq }
}

/** Opens a change stream on event inserts and waits until the server established it. */
export const openEventChanges =
  (c: Collections) =>
  async (resumeAfter: unknown): Promise<ChangeCursor> => {
    const stream = c.events.watch<EventDocument>(PIPELINE, {
      maxAwaitTimeMS: MAX_AWAIT_MS,
      ...(resumeAfter === null || resumeAfter === undefined ? {} : { resumeAfter })
    })
    try {
      // The first tryNext runs the aggregate: once it answers, every later insert reaches this stream.
      const first = await stream.tryNext()
      return cursorOf(stream, first === null ? null : toChange(first))
    } catch (cause) {
      await stream.close().catch(() => {})
      throw cause
    }
  }

export const lastSeqsOf =
  (c: Collections) =>
  async (runIds: ReadonlyArray<string>): Promise<ReadonlyArray<Change>> => {
    const docs = await c.runs
      .find({ _id: { $in: [...runIds] } }, { projection: { _id: 1, last_seq: 1 } })
      .toArray()
    return docs.map((d) => ({ runId: d._id, seq: d.last_seq as number }))
  }

/** True when the server runs change streams (a replica set or sharded cluster that implements them). */
export const detectChangeStreams = async (c: Collections): Promise<boolean> => {
  try {
    const cursor = await openEventChanges(c)(null)
    await cursor.close()
    return true
  } catch (cause) {
    // The server said no (not implemented, not a replica set): poll. Anything else is a real failure.
    if (cause instanceof MongoError && typeof cause.code === "number") return false
    throw cause
  }
}

export const eventSources = (c: Collections, changeStreams: boolean): HintSources => ({
  lastSeqs: lastSeqsOf(c),
  ...(changeStreams ? { openChanges: openEventChanges(c), isHistoryLost } : {})
})
