/**
 * Per-key limits of one process: a token bucket on every request, and a cap
 * on the SSE streams a key holds open at once. Both answer 429 RATE_LIMITED
 * (the JSON envelope, with `retry-after`) and key on the authenticated key id,
 * so they run after authentication. An open stream also lives only as long
 * as its key: it re-checks the key and ends once it is revoked or expired.
 */
import { makeRateLimiter, type Principal, type RateLimit } from "@baton/core"
import type { Context, MiddlewareHandler } from "hono"
import { type ApiEnv, errorResponse } from "./Envelope.js"

/** Whom a limit counts: the key, or the customer for a principal without one (in-process callers). */
const limitKey = (principal: Principal): string => principal.keyId ?? `customer:${principal.customerId}`

const rateLimited = (c: Context<ApiEnv>, retryAfterSeconds: number, message: string): Response => {
  c.header("retry-after", String(Math.max(1, retryAfterSeconds)))
  return errorResponse(c, 429, "RATE_LIMITED", message)
}

/** A token bucket per key id; `perSecond` 0 lets everything through. */
export const rateLimitPerKey = (limit: RateLimit): MiddlewareHandler<ApiEnv> => {
  if (limit.perSecond <= 0) return (_c, next) => next()
  const limiter = makeRateLimiter(limit)
  return async (c, next) => {
    if (c.req.method === "OPTIONS") return next()
    const taken = limiter.take(limitKey(c.get("principal")), Date.now())
    if (!taken.allowed)
      return rateLimited(
        c,
        Math.ceil(taken.retryAfterMs / 1000),
        "Too many requests for this key; slow down."
      )
    await next()
  }
}

/** What bounds the open streams: a cap per key, and how often each re-checks its key. */
export interface StreamSlotsOptions {
  /** Streams one key holds open at once; 0: no cap. */
  readonly maxPerKey: number
  /** How often an open stream re-checks its key (through the engine's key cache); 0: never. */
  readonly keyRecheckMs: number
  /** Whether the principal's key still verifies (not revoked, not expired). */
  readonly keyStillValid: (principal: Principal) => Promise<boolean>
}

/** The open SSE streams of this process, per key. */
export interface StreamSlots {
  /**
   * Wraps a stream route: 429 when the key is at its cap, else the route's response, its slot freed
   * when the body ends, and the body ended (cleanly) once its key no longer verifies.
   */
  readonly guard: (c: Context<ApiEnv>, open: () => Promise<Response>) => Promise<Response>
  /** Streams open for a key now (for tests). */
  readonly held: (keyId: string) => number
}

export const makeStreamSlots = (options: StreamSlotsOptions): StreamSlots => {
  const { maxPerKey: max, keyRecheckMs } = options
  const open = new Map<string, number>()
  const release = (key: string) => {
    const n = (open.get(key) ?? 1) - 1
    if (n <= 0) open.delete(key)
    else open.set(key, n)
  }
  // The streams to end when their key stops verifying, by key: one timer for the process and one
  // check per key per tick, however many streams (a timer per stream would cost each connection).
  const watched = new Map<string, { principal: Principal; ends: Set<() => void> }>()
  let ticker: NodeJS.Timeout | undefined
  let ticking = false
  const tick = async () => {
    if (ticking) return
    ticking = true
    try {
      await Promise.all(
        [...watched].map(async ([key, entry]) => {
          // The store cannot answer: keep the streams (they read the same store); new requests get 503.
          const valid = await options.keyStillValid(entry.principal).catch(() => true)
          if (!valid) for (const end of [...(watched.get(key)?.ends ?? [])]) end()
        })
      )
    } finally {
      ticking = false
    }
  }
  const watch = (principal: Principal, end: () => void): (() => void) => {
    const key = limitKey(principal)
    let entry = watched.get(key)
    if (entry === undefined) {
      entry = { principal, ends: new Set() }
      watched.set(key, entry)
    }
    entry.ends.add(end)
    if (ticker === undefined) {
      ticker = setInterval(() => void tick(), keyRecheckMs)
      ticker.unref()
    }
    return () => {
      const current = watched.get(key)
      current?.ends.delete(end)
      if (current !== undefined && current.ends.size === 0) watched.delete(key)
      if (watched.size === 0 && ticker !== undefined) {
        clearInterval(ticker)
        ticker = undefined
      }
    }
  }
  return {
    held: (keyId) => open.get(keyId) ?? 0,
    guard: async (c, start) => {
      const principal = c.get("principal")
      const key = limitKey(principal)
      const capped = max > 0
      const held = open.get(key) ?? 0
      if (capped && held >= max)
        return rateLimited(c, 1, `This key already holds ${max} open streams; close one first.`)
      if (capped) open.set(key, held + 1)
      let released = false
      const releaseOnce = () => {
        if (released) return
        released = true
        if (capped) release(key)
      }
      let response: Response
      try {
        response = await start()
      } catch (error) {
        // 404, 401… before the stream began: the slot was never used.
        releaseOnce()
        throw error
      }
      if (response.body === null) {
        releaseOnce()
        return response
      }
      const signal = c.req.raw.signal
      if (signal.aborted) {
        // The client left while the stream started: an abort listener added now would never fire.
        releaseOnce()
        await response.body.cancel().catch(() => undefined)
        return new Response(null, { status: response.status, headers: response.headers })
      }
      const watchKey =
        principal.keyId !== null && keyRecheckMs > 0 ? (end: () => void) => watch(principal, end) : null
      return new Response(untilDone(response.body, releaseOnce, signal, watchKey), {
        status: response.status,
        headers: response.headers
      })
    }
  }
}

/**
 * `body`, calling `done` once when it ends, fails, its reader cancels it or `signal` aborts (a client
 * that left); with `watchKey`, ended (closed, the source cancelled) when its key stops verifying.
 */
const untilDone = (
  body: ReadableStream<Uint8Array>,
  done: () => void,
  signal: AbortSignal,
  watchKey: ((end: () => void) => () => void) | null
): ReadableStream<Uint8Array> => {
  const reader = body.getReader()
  let ended = false
  let unwatch: (() => void) | null = null
  const finish = () => {
    ended = true
    unwatch?.()
    done()
  }
  signal.addEventListener(
    "abort",
    () => {
      if (ended) return
      finish()
      reader.cancel().catch(() => undefined)
    },
    { once: true }
  )
  return new ReadableStream<Uint8Array>({
    start(controller) {
      if (watchKey === null) return
      unwatch = watchKey(() => {
        if (ended) return
        finish()
        controller.close()
        // Ends the source too (for SSE: its feed subscription).
        reader.cancel().catch(() => undefined)
      })
    },
    async pull(controller) {
      try {
        const chunk = await reader.read()
        if (ended) return
        if (chunk.done) {
          finish()
          controller.close()
        } else controller.enqueue(chunk.value)
      } catch (error) {
        if (ended) return
        finish()
        controller.error(error)
      }
    },
    cancel(reason) {
      finish()
      return reader.cancel(reason)
    }
  })
}
