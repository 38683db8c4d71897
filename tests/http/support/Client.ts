/**
 * A small client over real `fetch` for the contract tests. Every response it
 * sees is checked for the request id contract (SPEC §4): an `x-request-id`
 * header, and in a JSON body the same `request_id`.
 */
import { randomUUID } from "node:crypto"
import { type EventSourceMessage, EventSourceParserStream } from "eventsource-parser/stream"
import { expect } from "vitest"
import type { Harness } from "./Harness.js"

// biome-ignore lint/suspicious/noExplicitAny: response bodies are whatever the server sent; tests assert their shape
export type Json = any

export interface ApiResponse {
  readonly status: number
  readonly headers: Headers
  readonly text: string
  /** The parsed body when it is JSON, else undefined. */
  readonly body: Json
}

export interface RequestOptions {
  /** `Authorization: Bearer <key>`; omitted when undefined. */
  readonly key?: string | undefined
  /** A JSON body (serialized, with `content-type: application/json` unless headers say otherwise). */
  readonly json?: unknown
  /** A raw body, sent as is. */
  readonly raw?: string
  readonly headers?: Record<string, string>
  readonly signal?: AbortSignal
}

const REQUEST_ID_HEADER = /^\S{1,128}$/

/** Checks the request id contract on any response. */
export const expectRequestId = (res: ApiResponse): void => {
  const header = res.headers.get("x-request-id")
  expect(header, `x-request-id on ${res.status}`).toMatch(REQUEST_ID_HEADER)
  if (res.body !== undefined) expect(res.body.request_id, `request_id in a ${res.status} body`).toBe(header)
}

export const buildInit = (method: string, options: RequestOptions): RequestInit => {
  const headers: Record<string, string> = {}
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
  let body: string | undefined
  if (options.json !== undefined) {
    headers["content-type"] = "application/json"
    body = JSON.stringify(options.json)
  }
  if (options.raw !== undefined) body = options.raw
  Object.assign(headers, options.headers ?? {})
  return {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
    ...(options.signal ? { signal: options.signal } : {})
  }
}

/** One request; the body is read in full and parsed when it is JSON. */
export const request = async (
  h: Harness,
  method: string,
  path: string,
  options: RequestOptions = {}
): Promise<ApiResponse> => {
  const res = await fetch(`${h.baseUrl}${path}`, buildInit(method, options))
  const text = await res.text()
  const isJson = (res.headers.get("content-type") ?? "").includes("application/json")
  const out: ApiResponse = {
    status: res.status,
    headers: res.headers,
    text,
    body: isJson && text.length > 0 ? JSON.parse(text) : undefined
  }
  expectRequestId(out)
  return out
}

/** Asserts the error envelope `{ error, reason_code, request_id, details? }` with this status and code. */
export const expectError = (res: ApiResponse, status: number, reasonCode: string): void => {
  expect({ status: res.status, reason_code: res.body?.reason_code }, res.text).toEqual({
    status,
    reason_code: reasonCode
  })
  expect(res.headers.get("content-type")).toMatch(/^application\/json/)
  expect(typeof res.body.error).toBe("string")
  expect(res.body.error.length).toBeGreaterThan(0)
  const allowed = new Set(["error", "reason_code", "request_id", "details"])
  for (const k of Object.keys(res.body)) expect(allowed.has(k), `unexpected field ${k}`).toBe(true)
}

export const newIdempotencyKey = (): string => `idem-${randomUUID()}`

/** POST /v1/runs with a fresh idempotency key; expects 201 and returns the run. */
export const createRun = async (h: Harness, key: string, body: Record<string, unknown>): Promise<Json> => {
  const res = await request(h, "POST", "/v1/runs", {
    key,
    json: body,
    headers: { "idempotency-key": newIdempotencyKey() }
  })
  expect(res.status, res.text).toBe(201)
  return res.body
}

export const getRun = async (h: Harness, key: string, runId: string): Promise<Json> => {
  const res = await request(h, "GET", `/v1/runs/${runId}`, { key })
  expect(res.status, res.text).toBe(200)
  return res.body
}

/** Polls GET /v1/runs/{id} until `predicate` holds; fails after `timeoutMs`. */
export const waitForRun = async (
  h: Harness,
  key: string,
  runId: string,
  predicate: (run: Json) => boolean,
  what = "the expected state",
  timeoutMs = 5000
): Promise<Json> => {
  const deadline = Date.now() + timeoutMs
  let last: Json
  for (;;) {
    last = await getRun(h, key, runId)
    if (predicate(last)) return last
    if (Date.now() > deadline)
      throw new Error(`run ${runId} did not reach ${what} in ${timeoutMs} ms; last: ${JSON.stringify(last)}`)
    await new Promise((r) => setTimeout(r, 10))
  }
}

export const waitForStatus = (h: Harness, key: string, runId: string, status: string): Promise<Json> =>
  waitForRun(h, key, runId, (r) => r.status === status, `status ${status}`)

/** Polls `check` until it returns true; fails after `timeoutMs`. */
export const eventually = async (check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000) => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** Every event of a run over GET /v1/runs/{id}/events, paging to the end. */
export const allEvents = async (h: Harness, key: string, runId: string): Promise<Json[]> => {
  const out: Json[] = []
  let after = 0
  for (;;) {
    const res = await request(h, "GET", `/v1/runs/${runId}/events?after_seq=${after}&limit=1000`, { key })
    expect(res.status, res.text).toBe(200)
    out.push(...res.body.data)
    if (!res.body.has_more) return out
    after = res.body.next_after_seq
  }
}

export const ALL_SCOPES = ["runs:read", "runs:write", "runs:signal", "keys:admin"] as const

/** Issues a key for a fresh customer (by the operator); returns the key and the customer id. */
export const newCustomer = async (
  h: Harness,
  scopes: ReadonlyArray<string> = ALL_SCOPES
): Promise<{ key: string; customerId: string; keyId: string }> => {
  const customerId = `cust_${randomUUID().slice(0, 8)}`
  const res = await request(h, "POST", "/v1/api-keys", {
    key: h.operatorKey,
    json: { scopes, customer_id: customerId, name: "test" }
  })
  expect(res.status, res.text).toBe(201)
  return { key: res.body.key, customerId, keyId: res.body.key_id }
}

/** Issues a key for the caller's own customer. */
export const issueKey = async (
  h: Harness,
  adminKey: string,
  body: Record<string, unknown>
): Promise<{ key: string; keyId: string }> => {
  const res = await request(h, "POST", "/v1/api-keys", { key: adminKey, json: body })
  expect(res.status, res.text).toBe(201)
  return { key: res.body.key, keyId: res.body.key_id }
}

// ---------------------------------------------------------------------------
// SSE

export interface SseEvent {
  readonly id: string | undefined
  readonly event: string | undefined
  readonly data: Json
}

export interface SseConnection {
  readonly response: Response
  /** Next parsed event, or null when the server ended the response. */
  readonly next: (timeoutMs?: number) => Promise<SseEvent | null>
  /** Reads until `until` holds for an event (inclusive) or the response ends. */
  readonly readUntil: (until: (e: SseEvent) => boolean, timeoutMs?: number) => Promise<SseEvent[]>
  /** Reads to the end of the response. */
  readonly readToEnd: (timeoutMs?: number) => Promise<SseEvent[]>
  /** The `retry:` hints and comments seen so far. */
  readonly retries: number[]
  readonly comments: string[]
  readonly abort: () => void
}

export interface StreamOptions {
  readonly lastEventId?: string
  readonly afterSeq?: number | string
  readonly headers?: Record<string, string>
}

const withTimeout = <A>(p: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
    })
  ]).finally(() => clearTimeout(timer))
}

/** Opens GET /v1/runs/{id}/events/stream; the response must be a 200 event stream. */
export const openStream = async (
  h: Harness,
  key: string,
  runId: string,
  options: StreamOptions = {}
): Promise<SseConnection> => {
  const controller = new AbortController()
  const query = options.afterSeq === undefined ? "" : `?after_seq=${options.afterSeq}`
  const headers: Record<string, string> = { authorization: `Bearer ${key}`, ...(options.headers ?? {}) }
  if (options.lastEventId !== undefined) headers["last-event-id"] = options.lastEventId
  const response = await fetch(`${h.baseUrl}/v1/runs/${runId}/events/stream${query}`, {
    headers,
    signal: controller.signal
  })
  expect(response.status, `stream status for ${runId}`).toBe(200)
  expect(response.headers.get("content-type")).toMatch(/^text\/event-stream/)
  expect(response.headers.get("x-request-id")).toMatch(REQUEST_ID_HEADER)
  const retries: number[] = []
  const comments: string[] = []
  const reader = response
    .body!.pipeThrough(new TextDecoderStream())
    .pipeThrough(
      new EventSourceParserStream({
        onRetry: (ms) => retries.push(ms),
        onComment: (c) => comments.push(c),
        onError: "terminate"
      })
    )
    .getReader()
  let ended = false
  const next = async (timeoutMs = 5000): Promise<SseEvent | null> => {
    if (ended) return null
    const r: { done: boolean; value?: EventSourceMessage | undefined } = await withTimeout(
      reader.read(),
      timeoutMs,
      `next event of ${runId}`
    )
    if (r.done || r.value === undefined) {
      ended = true
      return null
    }
    return { id: r.value.id, event: r.value.event, data: JSON.parse(r.value.data) }
  }
  const readUntil = async (until: (e: SseEvent) => boolean, timeoutMs = 5000): Promise<SseEvent[]> => {
    const deadline = Date.now() + timeoutMs
    const out: SseEvent[] = []
    for (;;) {
      const e = await next(Math.max(1, deadline - Date.now()))
      if (e === null) return out
      out.push(e)
      if (until(e)) return out
    }
  }
  return {
    response,
    next,
    readUntil,
    readToEnd: (timeoutMs = 5000) => readUntil(() => false, timeoutMs),
    retries,
    comments,
    abort: () => controller.abort()
  }
}

export const TERMINAL_TYPES = new Set([
  "run.worker.succeeded",
  "run.worker.failed",
  "run.cancelled",
  "run.limit_exceeded"
])
export const isTerminalEvent = (e: SseEvent): boolean => TERMINAL_TYPES.has(e.data.type)

/** Asserts that the events carry seqs `from`, `from + 1`, … with no gap and no duplicate. */
export const expectContiguous = (seqs: ReadonlyArray<number>, from = 1): void => {
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => from + i))
}

/**
 * Reads a response body as text until `until(text)` holds or the body ends; returns the text and
 * whether it ended. The body stays locked: abort the request to let go of it.
 */
export const readRaw = async (
  response: Response,
  until: (text: string) => boolean,
  timeoutMs = 5000
): Promise<{ text: string; ended: boolean }> => {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader()
  const deadline = Date.now() + timeoutMs
  let text = ""
  for (;;) {
    if (until(text)) return { text, ended: false }
    const r = await withTimeout(reader.read(), Math.max(1, deadline - Date.now()), "raw stream text")
    if (r.done) return { text, ended: true }
    text += r.value
  }
}
