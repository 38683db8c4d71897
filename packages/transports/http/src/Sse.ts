/**
 * `GET /runs/{id}/events/stream` (SPEC §5). Ownership is checked before the
 * response starts (401/404 stay JSON). Events are framed as
 * `id: <seq>` / `event: run_event` / `data: <envelope>`; a `: ping` comment
 * keeps idle connections alive. A reader too slow to keep up past the buffer
 * limit is disconnected — it resumes with Last-Event-ID — so no connection
 * can grow server memory without bound. A client abort ends the engine
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
}

const frame = (event: RunEvent): string =>
  `id: ${event.seq}\nevent: run_event\ndata: ${JSON.stringify(event)}\n\n`

/** Where to start: Last-Event-ID wins over after_seq; both must be non-negative integers. */
const startSeq = (c: Context<ApiEnv>): number => {
  const raw = c.req.header("last-event-id") ?? c.req.query("after_seq")
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

  c.header("content-type", "text/event-stream; charset=utf-8")
  c.header("cache-control", "no-cache, no-transform")
  c.header("connection", "keep-alive")
  c.header("x-accel-buffering", "no")

  return stream(c, async (out) => {
    const iterator = events[Symbol.asyncIterator]()
    const queue: string[] = []
    let queuedBytes = 0
    let finished = false
    let wakeWriter: (() => void) | null = null
    const wake = () => {
      const w = wakeWriter
      wakeWriter = null
      w?.()
    }
    const end = () => {
      if (finished) return
      finished = true
      wake()
      // Ends the engine subscription (feed listener, poll timer) at once.
      void iterator.return?.()
    }
    const enqueue = (chunk: string) => {
      if (finished) return
      queue.push(chunk)
      queuedBytes += Buffer.byteLength(chunk)
      // A reader that cannot keep up is let go; it resumes by Last-Event-ID.
      if (queuedBytes > bufferLimit) {
        queue.length = 0
        end()
      } else wake()
    }
    out.onAbort(end)

    const heartbeat = setInterval(() => enqueue(": ping\n\n"), heartbeatMs)
    const reader = (async () => {
      try {
        for (;;) {
          const next = await iterator.next()
          if (next.done || finished) break
          enqueue(frame(next.value))
          if (isTerminalEventType(next.value.type)) break
        }
      } catch {
        // A storage failure mid-stream: end it; the client resumes by id.
      }
      // Let the writer drain what is queued, then stop.
      if (!finished) queue.push("")
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
        const chunk = queue.shift()!
        if (chunk === "") break // the reader is done: everything before it was written
        queuedBytes -= Buffer.byteLength(chunk)
        await out.write(chunk)
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
