/**
 * `GET /runs/{id}/events/stream` (SPEC §5). Ownership is checked before the
 * response starts (401/404 stay JSON). Events are framed as
 * `id: <seq>` / `event: run_event` / `data: <envelope>`; a `: ping` comment
 * keeps idle connections alive. The log is read only while the connection's
 * queue is under its byte limit, so no connection grows server memory without
 * bound; a reader that stays that far behind for `stallMs` is disconnected
 * and resumes with Last-Event-ID. A client abort ends the engine
 * subscription at once.
 */

import type { BatonEngine } from "@baton/core"
import { isTerminalEventType, type RunEvent } from "@baton/core"
import type { Context } from "hono"
import { stream } from "hono/streaming"
import { type ApiEnv, fail } from "./Envelope.js"

export interface SseOptions {
  /** `: ping` comment interval (default 15 000 ms). */
  readonly heartbeatMs?: number
  /** Bytes queued for one reader before the server ends its stream (default 1 MiB). */
  readonly bufferLimitBytes?: number
  /** The `retry:` hint sent first (default 2000 ms). */
  readonly retryMs?: number
  /** A reader whose buffer is full and that takes nothing for this long is disconnected (default 5000 ms). */
  readonly stallMs?: number
}

interface Frame {
  readonly text: string
  readonly bytes: number
}

/**
 * An event's frame. Subscribers of one run share the event objects of the
 * engine's shared reader, so one frame (one JSON.stringify, one string) serves
 * them all; a weak map lets it go with the event.
 */
const frames = new WeakMap<RunEvent, Frame>()
const frameOf = (event: RunEvent): Frame => {
  let frame = frames.get(event)
  if (frame === undefined) {
    const text = `id: ${event.seq}\nevent: run_event\ndata: ${JSON.stringify(event)}\n\n`
    frame = { text, bytes: Buffer.byteLength(text) }
    frames.set(event, frame)
  }
  return frame
}
const PING: Frame = { text: ": ping\n\n", bytes: 8 }
/** Queued by the reader when it is done: the writer stops after what precedes it. */
const DONE: Frame = { text: "", bytes: 0 }

/** Where to start: Last-Event-ID wins over after_seq; both must be non-negative integers. */
const startSeq = (c: Context<ApiEnv>): number => {
  const header = c.req.header("last-event-id")
  const raw = header !== undefined && header.trim() !== "" ? header.trim() : c.req.query("after_seq")
  if (raw === undefined || raw === "") return 0
  if (!/^\d{1,15}$/.test(raw))
    fail(400, "VALIDATION_FAILED", "Last-Event-ID / after_seq is a non-negative integer.")
  return Number(raw)
}

export const streamRunEvents = async (
  c: Context<ApiEnv>,
  engine: BatonEngine,
  options: SseOptions
): Promise<Response> => {
  const afterSeq = startSeq(c)
  // Fails (404, 401…) before any byte of the stream is sent.
  const events = await engine.subscribe(c.req.param("id")!, { afterSeq, principal: c.get("principal") })
  const heartbeatMs = options.heartbeatMs ?? 15_000
  const bufferLimit = options.bufferLimitBytes ?? 1024 * 1024
  const retryMs = options.retryMs ?? 2000
  const stallMs = options.stallMs ?? 5000

  c.header("content-type", "text/event-stream; charset=utf-8")
  c.header("cache-control", "no-cache, no-transform")
  c.header("connection", "keep-alive")
  c.header("x-accel-buffering", "no")

  return stream(c, async (out) => {
    const iterator = events[Symbol.asyncIterator]()
    const queue: Frame[] = []
    let queuedBytes = 0
    let finished = false
    let wakeWriter: (() => void) | null = null
    const wake = () => {
      const w = wakeWriter
      wakeWriter = null
      w?.()
    }
    // Set while the reader waits for room in the queue; called when a frame was written or the stream ends.
    let drained: (() => void) | null = null
    const signalDrained = () => {
      const d = drained
      drained = null
      d?.()
    }
    const end = () => {
      if (finished) return
      finished = true
      wake()
      signalDrained()
      // Leaves the engine subscription at once; a reader parked on next() gets `done`.
      iterator.return?.().catch(() => undefined)
    }
    const enqueue = (frame: Frame) => {
      if (finished) return
      queue.push(frame)
      queuedBytes += frame.bytes
      wake()
    }
    out.onAbort(end)

    // Pings only keep an idle line alive; a backed-up one needs none.
    const heartbeat = setInterval(() => queue.length === 0 && enqueue(PING), heartbeatMs)
    let lastWriteAt = Date.now()
    /**
     * Reading from the log waits while the queue is full, so memory stays
     * bounded; a reader that drains nothing for `stallMs` meanwhile is let go
     * (it resumes by Last-Event-ID).
     */
    const roomInQueue = async (): Promise<boolean> => {
      while (queuedBytes >= bufferLimit && !finished) {
        const waited = new Promise<void>((resolve) => {
          drained = resolve
        })
        let timer: NodeJS.Timeout | undefined
        // `end()` settles `waited` too, so nothing outlives this wait.
        await Promise.race([waited, new Promise((r) => (timer = setTimeout(r, stallMs)))])
        clearTimeout(timer)
        if (queuedBytes >= bufferLimit && Date.now() - lastWriteAt >= stallMs) {
          queue.length = 0
          end()
          // The writer is stuck in a write the client does not read: abort the response itself.
          out.abort()
        }
      }
      return !finished
    }
    const reader = (async () => {
      try {
        for (;;) {
          if (!(await roomInQueue())) break
          // `end()` returns the iterator, which settles a pending next() as done.
          const next = await iterator.next()
          if (next.done || finished) break
          enqueue(frameOf(next.value))
          if (isTerminalEventType(next.value.type)) break
        }
      } catch {
        // A storage failure mid-stream: end it; the client resumes by id.
      }
      // Let the writer drain what is queued, then stop.
      if (!finished) queue.push(DONE)
      wake()
    })()

    try {
      await out.write(`retry: ${retryMs}\n\n`)
      for (;;) {
        if (queue.length === 0) {
          if (finished) break
          await new Promise<void>((resolve) => {
            wakeWriter = resolve
          })
          continue
        }
        const frame = queue.shift()!
        if (frame === DONE) break // the reader is done: everything before it was written
        await out.write(frame.text)
        queuedBytes -= frame.bytes
        lastWriteAt = Date.now()
        signalDrained()
      }
    } catch {
      // The client went away mid-write.
    } finally {
      clearInterval(heartbeat)
      end()
      await reader
    }
  })
}
