/**
 * A RunsClient straight over an engine in this process: the same calls, the
 * same results and the same ApiErrors as over HTTP, without a server. Every
 * call acts as one principal (default: the local operator, all scopes).
 */
import {
  ApiError,
  type BatonEngine,
  LOCAL_PRINCIPAL,
  type Principal,
  type RunEvent,
  type RunsClient,
  type StreamOptions,
  toApiError
} from "@baton/core"
import { call } from "./internal/call.js"

export const createInProcessClient = (
  engine: BatonEngine,
  principal: Principal = LOCAL_PRINCIPAL
): RunsClient => ({
  async createRun(body, options) {
    const result = await call(
      engine.createRun(body, {
        idempotencyKey: options.idempotencyKey,
        requireIdempotencyKey: true,
        principal
      })
    )
    switch (result._tag) {
      case "Created":
        return { run: result.run, replayed: false }
      case "Replayed":
        return { run: result.run, replayed: true }
      case "KeyReused":
        throw new ApiError(409, "IDEMPOTENCY_KEY_REUSED", "This idempotency key was used with another body.")
    }
  },
  getRun: (runId) => call(engine.getRun(runId, principal)),
  listRuns: (params = {}) => call(engine.listRuns(params, principal)),
  readEvents: (runId, params = {}) => call(engine.readEvents(runId, params, principal)),
  streamEvents: (runId, options = {}) => ({
    // A fresh subscription for every iteration of the iterable.
    [Symbol.asyncIterator]: () => follow(engine, principal, runId, options)
  }),
  signalRun: (runId, body, options = {}) =>
    call(
      engine.signalRun(runId, body, principal, {
        ...(options.idempotencyKey === undefined ? {} : { idempotencyKey: options.idempotencyKey })
      })
    ),
  cancelRun: (runId, body = {}) => call(engine.cancelRun(runId, body, principal)),
  createApiKey: (body) => call(engine.issueKey(body, principal)),
  listApiKeys: () => call(engine.listKeys(principal)),
  async revokeApiKey(keyId) {
    await call(engine.revokeKey(keyId, principal))
  }
})

const ABORTED: unique symbol = Symbol("aborted")

/**
 * The engine's subscription as an async generator. An abort of `signal` ends
 * it quietly (like the consumer leaving the loop), even while it waits for the
 * next live event; either way the engine subscription is released at once.
 */
async function* follow(
  engine: BatonEngine,
  principal: Principal,
  runId: string,
  options: StreamOptions
): AsyncGenerator<RunEvent, void, undefined> {
  const signal = options.signal
  // A function, not a narrowed property: the flag changes while we await.
  const aborted = (): boolean => signal?.aborted === true
  if (aborted()) return
  const events = await call(engine.subscribe(runId, { afterSeq: options.afterSeq ?? 0, principal }))
  const iterator = events[Symbol.asyncIterator]()
  // Settles the pending wait with ABORTED; one listener for the whole stream, nothing kept per event.
  let interrupt: ((value: typeof ABORTED) => void) | null = null
  const onAbort = () => interrupt?.(ABORTED)
  signal?.addEventListener("abort", onAbort, { once: true })
  try {
    for (;;) {
      // Aborted while the consumer held the last event.
      if (aborted()) return
      // On abort the pending next() is abandoned: return() below interrupts the stream behind it.
      const next = await new Promise<IteratorResult<RunEvent> | typeof ABORTED>((resolve, reject) => {
        interrupt = resolve
        iterator.next().then(resolve, reject)
      })
      interrupt = null
      if (next === ABORTED || next.done) return
      yield next.value
    }
  } catch (error) {
    throw toApiError(error)
  } finally {
    signal?.removeEventListener("abort", onAbort)
    await iterator.return?.()
  }
}
