/**
 * `GET /runs/{id}/events/stream` (SPEC §5). Ownership is checked before the
 * response starts (401/404 stay JSON). Events are framed as
 * `id: <seq>` / `event: run_event` / `data: <envelope>`; a `: ping` comment
 * keeps idle connections alive.
 *
 * A connection is one pull-based `ReadableStream` and nothing else: the
 * server (`@hono/node-server`) reads it only while the socket takes writes,
 * and the stream pulls the next event only while its queue holds less than
 * the byte limit, so no connection grows server memory without bound. A
 * reader that leaves the queue full for `stallMs` is disconnected and resumes
 * with Last-Event-ID. Cancelling the body (a client abort) ends the engine
 * subscription at once.
 */

import type { BatonEngine } from "@baton/core"
import { isTerminalEventType, type RunEvent } from "@baton/core"
import type { Context } from "hono"
import { type ApiEnv, fail } from "./Envelope.js"

export interface SseOptions {
  /** `: ping` comment interval (default 15 000 ms). */
  readonly heartbeatMs?: number
  /** Bytes queued for one reader before the server stops reading the log for it (default 1 MiB). */
  readonly bufferLimitBytes?: number
  /** The `retry:` hint sent first (default 2000 ms). */
  readonly retryMs?: number
  /** A reader whose queue is full and that takes nothing for this long is disconnected (default 5000 ms). */
  readonly stallMs?: number
}

const encoder = new TextEncoder()

/**
 * An event's frame, encoded once. Subscribers of one run share the event
 * objects of the engine's shared reader, so one frame (one JSON.stringify, one
 * buffer) serves them all — a socket write keeps a reference, it does not
 * copy; a weak map lets it go with the event.
 */
const frames = new WeakMap<RunEvent, Uint8Array>()
const frameOf = (event: RunEvent): Uint8Array => {
  let frame = frames.get(event)
  if (frame === undefined) {
    frame = encoder.encode(`id: ${event.seq}\nevent: run_event\ndata: ${JSON.stringify(event)}\n\n`)
    frames.set(event, frame)
  }
  return frame
}
const PING = encoder.encode(": ping\n\n")
const retryFrames = new Map<number, Uint8Array>()
const retryFrame = (ms: number): Uint8Array => {
  let frame = retryFrames.get(ms)
  if (frame === undefined) {
    frame = encoder.encode(`retry: ${ms}\n\n`)
    retryFrames.set(ms, frame)
  }
  return frame
}

/** The queue's size in bytes, so `bufferLimitBytes` bounds it. */
const byteSize = (chunk: Uint8Array): number => chunk.byteLength

/** Where to start: Last-Event-ID wins over after_seq; both must be non-negative integers. */
const startSeq = (c: Context<ApiEnv>): number => {
  const header = c.req.header("last-event-id")
  const raw = header !== undefined && header.trim() !== "" ? header.trim() : c.req.query("after_seq")
  if (raw === undefined || raw === "") return 0
  if (!/^\d{1,15}$/.test(raw))
    fail(400, "VALIDATION_FAILED", "Last-Event-ID / after_seq is a non-negative integer.")
  return Number(raw)
}

const HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  connection: "keep-alive",
  "x-accel-buffering": "no"
}

/** Why a stalled reader's body is errored where there is no Node socket to cut (never sent). */
class ReaderStalled extends Error {
  override readonly name = "ReaderStalled"
}

/**
 * The Node response under `@hono/node-server` (its documented `c.env.outgoing`);
 * undefined elsewhere. Destroying it cuts a stalled reader without the
 * adapter logging an errored body as a server error and writing its message
 * into the stream.
 */
const nodeResponse = (c: Context<ApiEnv>): { destroy: () => void } | undefined => {
  const env: unknown = c.env
  if (typeof env !== "object" || env === null || !("outgoing" in env)) return undefined
  const outgoing: unknown = env.outgoing
  return typeof outgoing === "object" &&
    outgoing !== null &&
    "destroy" in outgoing &&
    typeof outgoing.destroy === "function"
    ? (outgoing as { destroy: () => void })
    : undefined
}

/** The connections pinged on one interval: a timer per interval, not per connection. */
interface Heartbeat {
  readonly timer: NodeJS.Timeout
  readonly pings: Set<() => void>
}
const heartbeats = new Map<number, Heartbeat>()

/** Calls `ping` every `ms` until the returned function is called. */
const onHeartbeat = (ms: number, ping: () => void): (() => void) => {
  let heartbeat = heartbeats.get(ms)
  if (heartbeat === undefined) {
    const pings = new Set<() => void>()
    const timer = setInterval(() => {
      for (const p of pings) p()
    }, ms)
    // The connections keep the process alive, not their pings.
    timer.unref()
    heartbeat = { timer, pings }
    heartbeats.set(ms, heartbeat)
  }
  const { pings, timer } = heartbeat
  pings.add(ping)
  return () => {
    pings.delete(ping)
    if (pings.size === 0 && heartbeats.get(ms)?.pings === pings) {
      clearInterval(timer)
      heartbeats.delete(ms)
    }
  }
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
  const stallMs = options.stallMs ?? 5000
  const iterator = events[Symbol.asyncIterator]()
  // Taken now: the stream's callbacks must not hold the request's context.
  const socket = nodeResponse(c)

  let finished = false
  let stopHeartbeat: (() => void) | undefined
  let stall: NodeJS.Timeout | undefined
  /** Stops the timers and leaves the engine subscription (a `next()` waiting settles as done); once. */
  const end = () => {
    if (finished) return
    finished = true
    stopHeartbeat?.()
    clearTimeout(stall)
    iterator.return?.().catch(() => undefined)
  }

  let controller: ReadableStreamDefaultController<Uint8Array>
  /** Queues the cursor's next event, closing after the terminal one or the end. */
  const deliver = (next: IteratorResult<RunEvent>) => {
    if (finished) return
    if (next.done) {
      end()
      controller.close()
      return
    }
    controller.enqueue(frameOf(next.value))
    if (isTerminalEventType(next.value.type)) {
      end()
      controller.close()
    } else if ((controller.desiredSize ?? 0) <= 0) {
      // Full: pull is not called again until the client takes some. If it takes nothing for
      // `stallMs`, the connection is cut (which cancels the body).
      stall = setTimeout(() => {
        end()
        if (socket !== undefined) socket.destroy()
        else controller.error(new ReaderStalled("The client read nothing while its buffer was full."))
      }, stallMs)
    }
  }
  // A storage failure mid-stream: end it; the client resumes by id.
  const endAfterFailure = () => deliver({ done: true, value: undefined })

  const body = new ReadableStream<Uint8Array>(
    {
      start(streamController) {
        controller = streamController
        controller.enqueue(retryFrame(options.retryMs ?? 2000))
        // Pings only keep an idle line alive: one with frames queued needs none.
        stopHeartbeat = onHeartbeat(heartbeatMs, () => {
          if (controller.desiredSize === bufferLimit) controller.enqueue(PING)
        })
      },
      // Called while the queue is under the limit; the stream calls it again once this settles.
      pull() {
        clearTimeout(stall)
        // `.then`, not an async function: no suspended frame per waiting connection.
        return iterator.next().then(deliver, endAfterFailure)
      },
      // The client went away (or the server gave up on the socket).
      cancel: end
    },
    { highWaterMark: bufferLimit, size: byteSize }
  )
  // Through the context, so headers set before (x-request-id) are kept.
  return c.body(body, 200, HEADERS)
}
