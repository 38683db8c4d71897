/**
 * createHttpClient: a RunsClient over the HTTP API of SPEC §4 and the event
 * stream of SPEC §5, with fetch. Refusals reject with the server's ApiError;
 * requests that are safe to repeat (GETs, and POST /runs thanks to its
 * idempotency key) are retried on network errors, 429, 502, 503 and 504; an
 * event stream resumes by seq after any cut, with neither gap nor duplicate.
 */
import {
  ApiError,
  type ApiKey,
  type CreatedKey,
  type ErrorDetail,
  type EventList,
  isTerminal,
  isTerminalEventType,
  type ListRunsParams,
  type Run,
  type RunEvent,
  type RunList,
  type RunsClient,
  type StreamOptions
} from "@baton/core"
import { EventSourceParserStream } from "eventsource-parser/stream"
import {
  backoffMs,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  RETRYABLE_STATUSES,
  retryDelayMs,
  sleep
} from "./internal/backoff.js"

export interface HttpClientOptions {
  /** Where the server is; the API is under `${baseUrl}/v1`. */
  readonly baseUrl: string
  /** `key_id:secret`, sent as `Authorization: Bearer <apiKey>`. */
  readonly apiKey: string
  /** Default: the global fetch. */
  readonly fetch?: typeof fetch
  /** Retries of a request that is safe to repeat (default 3). */
  readonly maxRetries?: number
  /** The first backoff step (default 200 ms); it doubles on each retry, with jitter. */
  readonly retryBaseMs?: number
  /**
   * An event stream that brings no byte (not even a `: ping`) for this long is
   * reconnected (default 45 000 ms: three missed pings of the server's 15 s).
   */
  readonly streamIdleTimeoutMs?: number
}

/**
 * No HTTP answer to report: the server could not be reached, or the
 * connection broke, and every allowed retry failed too. `cause` is the last
 * underlying error.
 */
export class ConnectionError extends Error {
  override readonly name = "ConnectionError"
}

/** Connections in a row that bring no new event before an event stream gives up. */
const STREAM_MAX_FAILURES = 10

interface Call {
  readonly method: "GET" | "POST" | "DELETE"
  readonly path: string
  readonly query?: URLSearchParams
  readonly body?: unknown
  readonly headers?: Readonly<Record<string, string>>
  /** Safe to send again: a GET, or a POST that carries an idempotency key. */
  readonly retry: boolean
}

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly body: unknown
}

type JsonObject = Record<string, unknown>

const isObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

const detailsOf = (value: unknown): ReadonlyArray<ErrorDetail> | undefined =>
  Array.isArray(value) &&
  value.every((d) => isObject(d) && typeof d.path === "string" && typeof d.message === "string")
    ? (value as ReadonlyArray<ErrorDetail>)
    : undefined

/** A refusal as an ApiError: the envelope's fields, or INTERNAL when the body is not the envelope. */
const errorOf = (status: number, headers: Headers, text: string): ApiError => {
  const retryAfter = parseRetryAfter(headers.get("retry-after"))
  const headerRequestId = headers.get("x-request-id")
  const body = parseJson(text)
  if (isObject(body) && typeof body.error === "string" && typeof body.reason_code === "string")
    return new ApiError(
      status,
      body.reason_code,
      body.error,
      typeof body.request_id === "string" ? body.request_id : headerRequestId,
      detailsOf(body.details),
      retryAfter
    )
  return new ApiError(
    status,
    "INTERNAL",
    `The server answered ${status} without an error envelope.`,
    headerRequestId,
    undefined,
    retryAfter
  )
}

/** The answer's JSON object, or an INTERNAL ApiError: a success we cannot read is no success. */
const objectOf = (answer: Answer): JsonObject => {
  if (isObject(answer.body)) return answer.body
  throw new ApiError(
    answer.status,
    "INTERNAL",
    "The server's answer is not a JSON object.",
    answer.headers.get("x-request-id")
  )
}

/** A body without the envelope's `request_id` (and a run's `replayed` flag). */
const strip = (answer: Answer): JsonObject => {
  const { request_id: _requestId, replayed: _replayed, ...rest } = objectOf(answer)
  return rest
}

const segment = encodeURIComponent

const listQuery = (params: ListRunsParams): URLSearchParams => {
  const query = new URLSearchParams()
  if (params.status !== undefined && params.status.length > 0) query.set("status", params.status.join(","))
  if (params.handler !== undefined) query.set("handler", params.handler)
  if (params.created_after !== undefined) query.set("created_after", params.created_after)
  if (params.created_before !== undefined) query.set("created_before", params.created_before)
  // Values travel as text; the server reads "true"/"false" and numerals back as booleans and numbers.
  for (const [key, value] of Object.entries(params.metadata ?? {}))
    query.append(`metadata[${key}]`, String(value))
  if (params.limit !== undefined) query.set("limit", String(params.limit))
  if (params.cursor !== undefined) query.set("cursor", params.cursor)
  return query
}

export const createHttpClient = (options: HttpClientOptions): RunsClient => {
  const root = `${options.baseUrl.replace(/\/+$/, "")}/v1`
  const fetchImpl = options.fetch ?? globalThis.fetch
  const maxRetries = options.maxRetries ?? 3
  const retryBaseMs = options.retryBaseMs ?? 200
  const idleTimeoutMs = options.streamIdleTimeoutMs ?? 45_000
  const authorization = `Bearer ${options.apiKey}`

  const urlOf = (path: string, query?: URLSearchParams): string => {
    const search = query?.toString() ?? ""
    return search === "" ? `${root}${path}` : `${root}${path}?${search}`
  }

  const send = async (call: Call): Promise<Answer> => {
    const url = urlOf(call.path, call.query)
    const init: RequestInit = {
      method: call.method,
      headers: {
        authorization,
        accept: "application/json",
        ...(call.body === undefined ? {} : { "content-type": "application/json" }),
        ...call.headers
      },
      ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) })
    }
    for (let attempt = 0; ; attempt++) {
      const mayRetry = call.retry && attempt < maxRetries
      let response: Response
      let text: string
      try {
        response = await fetchImpl(url, init)
        text = await response.text()
      } catch (error) {
        if (!mayRetry)
          throw new ConnectionError(`${call.method} ${url} failed: ${messageOf(error)}`, { cause: error })
        await sleep(backoffMs(attempt, retryBaseMs))
        continue
      }
      if (response.ok) {
        const body = text === "" ? null : parseJson(text)
        if (body === undefined)
          throw new ApiError(
            response.status,
            "INTERNAL",
            "The server's answer is not JSON.",
            response.headers.get("x-request-id")
          )
        return { status: response.status, headers: response.headers, body }
      }
      const error = errorOf(response.status, response.headers, text)
      const delay =
        mayRetry && RETRYABLE_STATUSES.has(response.status)
          ? retryDelayMs(attempt, retryBaseMs, error.retry_after)
          : null
      if (delay === null) throw error
      await sleep(delay)
    }
  }

  /** The run's last seq when it is terminal, else null. */
  const terminalSeq = async (runId: string): Promise<number | null> => {
    const run = strip(await send({ method: "GET", path: `/runs/${segment(runId)}`, retry: false })) as Run
    return isTerminal(run.status) ? run.last_seq : null
  }

  /**
   * One event stream, across as many connections as it takes. Each connection
   * resumes with `Last-Event-ID: <last seq yielded>`; a seq at or below it is
   * dropped should a server send it again. A connection that ends or fails
   * before the terminal event is replaced at once when it brought events,
   * else after a backoff (the server's `retry:` hint at least), and after
   * STREAM_MAX_FAILURES such connections in a row the stream fails.
   */
  async function* follow(
    runId: string,
    streamOptions: StreamOptions
  ): AsyncGenerator<RunEvent, void, undefined> {
    const signal = streamOptions.signal
    const aborted = (): boolean => signal?.aborted === true
    const url = urlOf(`/runs/${segment(runId)}/events/stream`)
    let last = streamOptions.afterSeq ?? 0
    let failures = 0
    let lastFailure: unknown = null
    let retryHintMs = 0
    while (!aborted()) {
      if (failures > 0) {
        if (failures >= STREAM_MAX_FAILURES)
          throw lastFailure instanceof ApiError || lastFailure instanceof ConnectionError
            ? lastFailure
            : new ConnectionError(`The event stream of ${runId} failed: ${messageOf(lastFailure)}`, {
                cause: lastFailure
              })
        const retryAfter = lastFailure instanceof ApiError ? lastFailure.retry_after : null
        await sleep(
          retryAfter !== null
            ? Math.min(retryAfter * 1000, MAX_RETRY_AFTER_MS)
            : Math.max(retryHintMs, backoffMs(failures - 1, retryBaseMs)),
          signal
        )
        if (aborted()) return
      }

      const connection = new AbortController()
      let body: { cancel(reason?: unknown): Promise<void> } | null = null
      /**
       * Ends this connection now: the fetch, and a read pending on its body —
       * cancelling the reader ends that read even with a fetch that ignores aborts.
       */
      const hangUp = (reason?: unknown) => {
        connection.abort(reason)
        body?.cancel(reason).catch(() => {})
      }
      const abortConnection = () => hangUp()
      signal?.addEventListener("abort", abortConnection, { once: true })
      let idle: ReturnType<typeof setTimeout> | undefined
      let idleExpired = false
      const pauseIdleClock = () => clearTimeout(idle)
      const restartIdleClock = () => {
        clearTimeout(idle)
        idle = setTimeout(() => {
          idleExpired = true
          hangUp(new ConnectionError(`No byte from the event stream for ${idleTimeoutMs} ms.`))
        }, idleTimeoutMs)
      }
      let progressed = false
      try {
        restartIdleClock()
        const response = await fetchImpl(url, {
          headers: {
            authorization,
            accept: "text/event-stream",
            // Sent for any afterSeq but 0, so a bad one is refused (400) as it is in-process.
            ...(last !== 0 ? { "last-event-id": String(last) } : {})
          },
          signal: connection.signal
        })
        if (!response.ok) throw errorOf(response.status, response.headers, await response.text())
        const requestId = response.headers.get("x-request-id")
        if (
          !(response.headers.get("content-type") ?? "").includes("text/event-stream") ||
          response.body === null
        )
          throw new ApiError(
            response.status,
            "INTERNAL",
            "The server's answer is not an event stream.",
            requestId
          )
        const messages = response.body
          .pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({
              transform(chunk, controller) {
                restartIdleClock()
                controller.enqueue(chunk)
              }
            })
          )
          .pipeThrough(new TextDecoderStream())
          .pipeThrough(
            new EventSourceParserStream({
              onRetry: (ms) => {
                retryHintMs = ms
              }
            })
          )
          .getReader()
        body = messages
        for (;;) {
          const read = await messages.read()
          if (read.done) break
          if (read.value.event !== "run_event") continue
          const event = parseJson(read.value.data)
          if (!isObject(event) || typeof event.seq !== "number" || typeof event.type !== "string")
            throw new ApiError(
              response.status,
              "INTERNAL",
              "An event on the stream is not an event.",
              requestId
            )
          if (event.seq <= last) continue
          last = event.seq
          progressed = true
          // The consumer may hold an event as long as it likes: that is not the server's silence.
          pauseIdleClock()
          yield event as unknown as RunEvent
          if (isTerminalEventType(event.type)) return
          restartIdleClock()
        }
        if (aborted()) return
        if (idleExpired) throw new ConnectionError(`No byte from the event stream for ${idleTimeoutMs} ms.`)
        // Ended before the terminal event. With no new event, the run may simply be over already.
        if (!progressed) {
          const finalSeq = await terminalSeq(runId)
          if (finalSeq !== null && finalSeq <= last) return
        }
        lastFailure = new ConnectionError(
          `The event stream of ${runId} ended before the run's terminal event.`
        )
      } catch (error) {
        if (aborted()) return
        if (error instanceof ApiError && !RETRYABLE_STATUSES.has(error.status)) throw error
        lastFailure = error
      } finally {
        clearTimeout(idle)
        signal?.removeEventListener("abort", abortConnection)
        // Frees the connection whichever way we leave: end, failure, abort, or the consumer's break.
        hangUp()
      }
      failures = progressed ? 0 : failures + 1
    }
  }

  return {
    async createRun(body, { idempotencyKey }) {
      const answer = await send({
        method: "POST",
        path: "/runs",
        body,
        headers: { "idempotency-key": idempotencyKey },
        retry: true
      })
      const replayed =
        answer.status === 200 ||
        objectOf(answer).replayed === true ||
        answer.headers.get("idempotent-replayed") === "true"
      return { run: strip(answer) as unknown as Run, replayed }
    },
    getRun: async (runId) =>
      strip(await send({ method: "GET", path: `/runs/${segment(runId)}`, retry: true })) as unknown as Run,
    listRuns: async (params = {}) =>
      strip(
        await send({ method: "GET", path: "/runs", query: listQuery(params), retry: true })
      ) as unknown as RunList,
    async readEvents(runId, params = {}) {
      const query = new URLSearchParams()
      if (params.after_seq !== undefined) query.set("after_seq", String(params.after_seq))
      if (params.limit !== undefined) query.set("limit", String(params.limit))
      const answer = await send({ method: "GET", path: `/runs/${segment(runId)}/events`, query, retry: true })
      return strip(answer) as unknown as EventList
    },
    streamEvents: (runId, streamOptions = {}) => ({
      // A fresh stream (and connection) for every iteration of the iterable.
      [Symbol.asyncIterator]: () => follow(runId, streamOptions)
    }),
    signalRun: async (runId, body, options = {}) => {
      const key = options.idempotencyKey
      // Only a keyed signal is safe to send twice.
      const answer = await send({
        method: "POST",
        path: `/runs/${segment(runId)}/signal`,
        body,
        ...(key === undefined ? {} : { headers: { "idempotency-key": key } }),
        retry: key !== undefined
      })
      return strip(answer) as unknown as Run
    },
    cancelRun: async (runId, body = {}) =>
      strip(
        await send({ method: "POST", path: `/runs/${segment(runId)}/cancel`, body, retry: false })
      ) as unknown as Run,
    createApiKey: async (body) =>
      strip(await send({ method: "POST", path: "/api-keys", body, retry: false })) as unknown as CreatedKey,
    async listApiKeys() {
      const list = objectOf(await send({ method: "GET", path: "/api-keys", retry: true }))
      if (!Array.isArray(list.data)) throw new ApiError(200, "INTERNAL", "The server's key list has no data.")
      return list.data as ReadonlyArray<ApiKey>
    },
    async revokeApiKey(keyId) {
      await send({ method: "DELETE", path: `/api-keys/${segment(keyId)}`, retry: false })
    }
  }
}
