/**
 * Per-key limits of one process: a token bucket on every request, and a cap
 * on the SSE streams a key holds open at once. Both answer 429 RATE_LIMITED
 * (the JSON envelope, with `retry-after`) and key on the authenticated key id,
 * so they run after authentication.
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

/** How many streams each key holds open; `max` 0 means no cap. */
export interface StreamSlots {
  /** Wraps a stream route: 429 when the key is at its cap, else the route's response, its slot freed when the body ends. */
  readonly guard: (c: Context<ApiEnv>, open: () => Promise<Response>) => Promise<Response>
  /** Streams open for a key now (for tests). */
  readonly held: (keyId: string) => number
}

export const makeStreamSlots = (max: number): StreamSlots => {
  const open = new Map<string, number>()
  const release = (key: string) => {
    const n = (open.get(key) ?? 1) - 1
    if (n <= 0) open.delete(key)
    else open.set(key, n)
  }
  return {
    held: (keyId) => open.get(keyId) ?? 0,
    guard: async (c, start) => {
      if (max <= 0) return start()
      const key = limitKey(c.get("principal"))
      const held = open.get(key) ?? 0
      if (held >= max)
        return rateLimited(c, 1, `This key already holds ${max} open streams; close one first.`)
      open.set(key, held + 1)
      let released = false
      const releaseOnce = () => {
        if (released) return
        released = true
        release(key)
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
      c.req.raw.signal.addEventListener("abort", releaseOnce, { once: true })
      return new Response(untilDone(response.body, releaseOnce), {
        status: response.status,
        headers: response.headers
      })
    }
  }
}

/** `body`, calling `done` once when it ends, fails, or its reader cancels it (a client that left). */
const untilDone = (body: ReadableStream<Uint8Array>, done: () => void): ReadableStream<Uint8Array> => {
  const reader = body.getReader()
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await reader.read()
        if (chunk.done) {
          done()
          controller.close()
        } else controller.enqueue(chunk.value)
      } catch (error) {
        done()
        controller.error(error)
      }
    },
    cancel(reason) {
      done()
      return reader.cancel(reason)
    }
  })
}
