/**
 * createHttpClient against a fake server (node:http, port 0) that speaks the
 * SPEC §4/§5 wire format with canned answers — not the real routes, so this
 * pins the client's side of the contract on its own: request shapes, result
 * and error mapping, retries, and SSE resume.
 */
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { ApiError, type RunEvent, type RunsClient } from "@baton/core"
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest"
import { ConnectionError, createHttpClient, type HttpClientOptions } from "../src/index.js"

// ---------------------------------------------------------------------------
// the fake server

interface Seen {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly rawQuery: string
  readonly headers: IncomingHttpHeaders
  readonly body: unknown
  readonly at: number
}

const API_KEY = "key_test1234:s3cretS3cretS3cret"
const seen: Seen[] = []
const hits = new Map<string, number>()
/** Count of earlier requests for the same thing: 0 on the first. */
const hit = (what: string): number => {
  const n = hits.get(what) ?? 0
  hits.set(what, n + 1)
  return n
}
/** Resolves when the server sees a connection of this run's stream close. */
const streamClosed = new Map<string, () => void>()

const NOW = "2026-11-28T12:00:00.000Z"
const runBody = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  status: "queued",
  handler: "default",
  input: { q: "hi" },
  metadata: {},
  output: null,
  error: null,
  awaiting_input: null,
  limits: {
    max_steps: 100,
    max_duration_ms: 3_600_000,
    max_step_attempts: 3,
    input_timeout_ms: null,
    max_tokens: null,
    max_cost_usd: null
  },
  usage: { steps: 0, attempts: 1, tokens: 0, cost_usd: 0 },
  last_seq: 1,
  cancel_requested: false,
  created_at: NOW,
  started_at: null,
  finished_at: null,
  updated_at: NOW,
  ...extra
})

const TYPES = [
  "run.queued",
  "run.started",
  "step.started",
  "step.progress",
  "step.done",
  "run.worker.succeeded"
]
const event = (seq: number, type = TYPES[seq - 1] ?? "step.progress"): RunEvent => ({
  seq,
  type,
  timestamp: NOW,
  payload: { redacted: false, value: { n: seq } }
})
const frame = (e: RunEvent): string => `id: ${e.seq}\nevent: run_event\ndata: ${JSON.stringify(e)}\n\n`

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
  res.writeHead(status, { "content-type": "application/json", "x-request-id": "req_hdr", ...headers })
  res.end(JSON.stringify(body))
}
const envelope = (
  res: ServerResponse,
  status: number,
  reasonCode: string,
  headers: Record<string, string> = {},
  details?: unknown
) =>
  json(
    res,
    status,
    {
      error: `refused: ${reasonCode}`,
      reason_code: reasonCode,
      request_id: "req_env",
      ...(details === undefined ? {} : { details })
    },
    headers
  )

const write = (res: ServerResponse, chunk: string): Promise<void> =>
  new Promise((resolve) => {
    res.write(chunk, () => resolve())
  })

/** §5: events after Last-Event-ID (or after_seq), scripted per run and per connection. */
const stream = async (req: IncomingMessage, res: ServerResponse, runId: string, query: URLSearchParams) => {
  const from = req.headers["last-event-id"] ?? query.get("after_seq") ?? "0"
  if (!/^\d+$/.test(String(from))) return envelope(res, 400, "VALIDATION_FAILED")
  const after = Number(from)
  const connection = hit(`stream ${runId}`)
  if (runId === "run_missing") return envelope(res, 404, "RUN_NOT_FOUND")
  if (runId === "run_flakystream" && connection === 0)
    return envelope(res, 503, "STORAGE_UNAVAILABLE", { "retry-after": "0" })
  if (runId === "run_broken") return req.socket.destroy()
  res.on("close", () => streamClosed.get(runId)?.())
  res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" })
  await write(res, "retry: 5\n\n")
  const send = async (from: number, to: number) => {
    for (let seq = from; seq <= to; seq++) await write(res, frame(event(seq)))
  }
  switch (runId) {
    case "run_cut":
      if (connection === 0) {
        // Three events, noise the client must skip, then the connection is cut mid-run.
        await send(after + 1, 3)
        await write(res, ": ping\n\nevent: other\ndata: {}\n\n")
        return res.socket?.destroy()
      }
      if (connection === 1) {
        // Resumed: a duplicate of the last event seen (dropped by the client), then an end before the terminal.
        await send(after, 5)
        return res.end()
      }
      await send(after + 1, 6)
      return res.end()
    case "run_flakystream":
    case "run_tail":
      await send(after + 1, 6)
      return res.end()
    case "run_done":
      // A terminal run already read to its end: replay nothing, then end.
      return res.end()
    case "run_idle":
      if (connection === 0) return send(1, 1) // then silence: no event, no ping
      await write(res, frame(event(after + 1, "run.cancelled")))
      return res.end()
    case "run_live":
      // One event, then the run waits for input: the connection stays open.
      return send(1, 1)
    default:
      return res.end()
  }
}

const handle = async (req: IncomingMessage, res: ServerResponse): Promise<unknown> => {
  const url = new URL(req.url ?? "/", "http://fake")
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const text = Buffer.concat(chunks).toString("utf8")
  const body: unknown = text === "" ? undefined : JSON.parse(text)
  seen.push({
    method: req.method ?? "",
    path: url.pathname,
    query: url.searchParams,
    rawQuery: url.search,
    headers: req.headers,
    body,
    at: performance.now()
  })
  if (req.headers.authorization !== `Bearer ${API_KEY}`) return envelope(res, 401, "AUTH_KEY_INVALID")
  const route = `${req.method} ${url.pathname.replace(/^\/v1/, "")}`
  const runMatch = /^(GET|POST) \/runs\/([^/]+)(\/.*)?$/.exec(route)
  if (route === "POST /runs") {
    const key = String(req.headers["idempotency-key"])
    switch (key) {
      case "k-new":
        return json(res, 201, { ...runBody("run_new"), request_id: "req_1" })
      case "k-replay":
        return json(
          res,
          200,
          { ...runBody("run_new", { status: "running" }), replayed: true, request_id: "req_2" },
          { "idempotent-replayed": "true" }
        )
      case "k-flaky":
        return hit(key) === 0
          ? envelope(res, 503, "STORAGE_UNAVAILABLE", { "retry-after": "0.2" })
          : json(res, 201, { ...runBody("run_flaky"), request_id: "req_3" })
      case "k-reused":
        return envelope(res, 409, "IDEMPOTENCY_KEY_REUSED")
      default:
        return envelope(res, 400, "VALIDATION_FAILED", {}, [{ path: "input", message: "is missing" }])
    }
  }
  if (route === "GET /runs")
    return json(res, 200, {
      data: [runBody("run_a")],
      has_more: true,
      next_cursor: "cur_2",
      request_id: "req_l"
    })
  if (route === "POST /api-keys")
    return json(res, 201, {
      key_id: "key_new12345",
      key: "key_new12345:secretsecretsecret",
      scopes: ["runs:read"],
      customer_id: "default",
      name: "ci",
      created_at: NOW,
      expires_at: null,
      revoked_at: null,
      request_id: "req_k"
    })
  if (route === "GET /api-keys")
    return json(res, 200, {
      data: [
        {
          key_id: "key_new12345",
          scopes: ["runs:read"],
          customer_id: "default",
          name: "ci",
          created_at: NOW,
          expires_at: null,
          revoked_at: null
        }
      ],
      request_id: "req_kl"
    })
  if (route === "DELETE /api-keys/key_new12345") {
    res.writeHead(204, { "x-request-id": "req_d" })
    return res.end()
  }
  if (runMatch !== null) {
    const [, method, runId, rest] = runMatch as unknown as [string, string, string, string | undefined]
    if (rest === "/events/stream") return stream(req, res, runId, url.searchParams)
    if (rest === "/events")
      return json(res, 200, {
        data: [event(2), event(3)],
        has_more: true,
        next_after_seq: 3,
        request_id: "req_e"
      })
    if (rest === "/signal" || rest === "/cancel") {
      if (runId === "run_busy") return envelope(res, 503, "STORAGE_UNAVAILABLE", { "retry-after": "0" })
      if (runId === "run_reset") return req.socket.destroy()
      const status = rest === "/signal" ? "queued" : "cancelled"
      return json(res, 202, { ...runBody(runId, { status }), request_id: "req_s" })
    }
    if (method === "GET" && rest === undefined)
      switch (runId) {
        case "run_missing":
          return envelope(res, 404, "RUN_NOT_FOUND")
        case "run_flaky":
          return hit(runId) === 0
            ? envelope(res, 503, "STORAGE_UNAVAILABLE", { "retry-after": "0.2" })
            : json(res, 200, { ...runBody(runId), request_id: "req_g" })
        case "run_reset":
          return hit(runId) === 0
            ? req.socket.destroy()
            : json(res, 200, { ...runBody(runId), request_id: "req_g" })
        case "run_limited":
          return envelope(res, 429, "RATE_LIMITED", { "retry-after": "120" })
        case "run_proxy":
          res.writeHead(502, { "content-type": "text/html" })
          return res.end("<html>Bad Gateway</html>")
        case "run_plain":
          res.writeHead(500, { "content-type": "text/plain", "x-request-id": "req_plain" })
          return res.end("oops")
        case "run_done":
          return json(res, 200, {
            ...runBody(runId, { status: "succeeded", last_seq: 3 }),
            request_id: "req_g"
          })
        default:
          return json(res, 200, { ...runBody(runId), request_id: "req_g" })
      }
  }
  return envelope(res, 404, "ROUTE_NOT_FOUND")
}

const server = createServer((req, res) => {
  handle(req, res).catch(() => res.destroy())
})
let baseUrl = ""

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

beforeEach(() => {
  seen.length = 0
  hits.clear()
  streamClosed.clear()
})

const client = (options: Partial<HttpClientOptions> = {}): RunsClient =>
  createHttpClient({ baseUrl: `${baseUrl}/`, apiKey: API_KEY, retryBaseMs: 1, ...options })

const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => new Error("resolved"),
    (e: unknown) => e
  )

const collect = async (events: AsyncIterable<RunEvent>): Promise<RunEvent[]> => {
  const out: RunEvent[] = []
  for await (const e of events) out.push(e)
  return out
}

const requestsTo = (path: string): Seen[] => seen.filter((s) => s.path === path)

// ---------------------------------------------------------------------------

describe("requests", () => {
  it("creates a run with the bearer key, a JSON body and the idempotency key", async () => {
    const body = {
      input: { q: "hi" },
      metadata: { team: "core" },
      handler: "default",
      limits: { max_steps: 5 }
    }
    const created = await client().createRun(body, { idempotencyKey: "k-new" })
    expect(created.replayed).toBe(false)
    expect(created.run).toEqual(runBody("run_new"))
    expect(created.run).not.toHaveProperty("request_id")
    const [request] = seen
    expect(request).toMatchObject({ method: "POST", path: "/v1/runs", body })
    expect(request!.headers).toMatchObject({
      authorization: `Bearer ${API_KEY}`,
      "content-type": "application/json",
      "idempotency-key": "k-new",
      accept: "application/json"
    })
  })

  it("reports a replayed create and strips the replayed flag from the run", async () => {
    const replayed = await client().createRun({ input: { q: "hi" } }, { idempotencyKey: "k-replay" })
    expect(replayed.replayed).toBe(true)
    expect(replayed.run).toEqual(runBody("run_new", { status: "running" }))
    expect(replayed.run).not.toHaveProperty("replayed")
  })

  it("encodes list filters, metadata[k] included, and returns the page without request_id", async () => {
    const page = await client().listRuns({
      status: ["queued", "running"],
      handler: "summarize",
      created_after: "2026-11-01T00:00:00.000Z",
      created_before: "2026-12-01T00:00:00.000Z",
      metadata: { team: "core & web", n: 2, flag: true },
      limit: 10,
      cursor: "cur_1"
    })
    expect(page).toEqual({ data: [runBody("run_a")], has_more: true, next_cursor: "cur_2" })
    const [request] = seen
    expect(request!.method).toBe("GET")
    expect(request!.headers["content-type"]).toBeUndefined()
    expect(Object.fromEntries(request!.query)).toEqual({
      status: "queued,running",
      handler: "summarize",
      created_after: "2026-11-01T00:00:00.000Z",
      created_before: "2026-12-01T00:00:00.000Z",
      "metadata[team]": "core & web",
      "metadata[n]": "2",
      "metadata[flag]": "true",
      limit: "10",
      cursor: "cur_1"
    })
    expect(request!.rawQuery).toContain("metadata%5Bteam%5D=core+%26+web")
    await client().listRuns()
    expect(seen[1]!.rawQuery).toBe("")
  })

  it("reads one run, a page of events, signals and cancels", async () => {
    const c = client()
    expect(await c.getRun("run_ok")).toEqual(runBody("run_ok"))
    await c.getRun("run with/slash")
    expect(seen[1]!.path).toBe("/v1/runs/run%20with%2Fslash")
    expect(await c.readEvents("run_ok", { after_seq: 1, limit: 2 })).toEqual({
      data: [event(2), event(3)],
      has_more: true,
      next_after_seq: 3
    })
    expect(Object.fromEntries(seen[2]!.query)).toEqual({ after_seq: "1", limit: "2" })
    const signalled = await c.signalRun("run_ok", {
      action: "submit_input",
      input: { ok: true },
      comment: "go"
    })
    expect(signalled).toEqual(runBody("run_ok", { status: "queued" }))
    expect(seen[3]).toMatchObject({
      method: "POST",
      path: "/v1/runs/run_ok/signal",
      body: { action: "submit_input", input: { ok: true }, comment: "go" }
    })
    expect(seen[3]!.headers["content-type"]).toBe("application/json")
    expect(await c.cancelRun("run_ok")).toEqual(runBody("run_ok", { status: "cancelled" }))
    expect(seen[4]).toMatchObject({ method: "POST", path: "/v1/runs/run_ok/cancel", body: {} })
    await c.cancelRun("run_ok", { reason: "no" })
    expect(seen[5]!.body).toEqual({ reason: "no" })
  })

  it("creates, lists and revokes API keys", async () => {
    const c = client()
    const created = await c.createApiKey({ scopes: ["runs:read"], name: "ci" })
    expect(created).toEqual({
      key_id: "key_new12345",
      key: "key_new12345:secretsecretsecret",
      scopes: ["runs:read"],
      customer_id: "default",
      name: "ci",
      created_at: NOW,
      expires_at: null,
      revoked_at: null
    })
    expect(seen[0]).toMatchObject({
      method: "POST",
      path: "/v1/api-keys",
      body: { scopes: ["runs:read"], name: "ci" }
    })
    const keys = await c.listApiKeys()
    expect(keys.map((k) => k.key_id)).toEqual(["key_new12345"])
    expect(await c.revokeApiKey("key_new12345")).toBeUndefined()
    expect(seen[2]).toMatchObject({ method: "DELETE", path: "/v1/api-keys/key_new12345", body: undefined })
  })
})

describe("errors", () => {
  it("rejects with the envelope's fields", async () => {
    const reused = await rejection(client().createRun({ input: 1 }, { idempotencyKey: "k-reused" }))
    expect(reused).toBeInstanceOf(ApiError)
    expect(reused).toMatchObject({
      status: 409,
      reason_code: "IDEMPOTENCY_KEY_REUSED",
      message: "refused: IDEMPOTENCY_KEY_REUSED",
      request_id: "req_env",
      details: undefined,
      retry_after: null
    })
    const invalid = await rejection(client().createRun({ input: 1 }, { idempotencyKey: "k-other" }))
    expect(invalid).toMatchObject({
      status: 400,
      reason_code: "VALIDATION_FAILED",
      details: [{ path: "input", message: "is missing" }]
    })
    const missing = await rejection(client().getRun("run_missing"))
    expect(missing).toMatchObject({ status: 404, reason_code: "RUN_NOT_FOUND", request_id: "req_env" })
    const unauthorized = await rejection(
      createHttpClient({ baseUrl, apiKey: "key_wrong123:nope" }).getRun("run_ok")
    )
    expect(unauthorized).toMatchObject({ status: 401, reason_code: "AUTH_KEY_INVALID" })
  })

  it("maps a body that is not the envelope to INTERNAL with the header's request id", async () => {
    const plain = await rejection(client().getRun("run_plain"))
    expect(plain).toBeInstanceOf(ApiError)
    expect(plain).toMatchObject({ status: 500, reason_code: "INTERNAL", request_id: "req_plain" })
    // 502 is retried, then given up on.
    const proxy = await rejection(client({ maxRetries: 2 }).getRun("run_proxy"))
    expect(proxy).toMatchObject({ status: 502, reason_code: "INTERNAL", request_id: null })
    expect(requestsTo("/v1/runs/run_proxy")).toHaveLength(3)
  })
})

describe("retries", () => {
  it("retries a GET after 503, waiting out retry-after", async () => {
    const run = await client().getRun("run_flaky")
    expect(run.id).toBe("run_flaky")
    const [first, second] = requestsTo("/v1/runs/run_flaky")
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(195)
  })

  it("retries POST /runs after 503 with the same idempotency key and body, waiting out retry-after", async () => {
    const created = await client().createRun({ input: { q: "again" } }, { idempotencyKey: "k-flaky" })
    expect(created).toMatchObject({ run: { id: "run_flaky" }, replayed: false })
    const [first, second] = requestsTo("/v1/runs")
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(195)
    expect(second!.headers["idempotency-key"]).toBe("k-flaky")
    expect(second!.body).toEqual(first!.body)
  })

  it("retries a GET after a network error", async () => {
    expect((await client().getRun("run_reset")).id).toBe("run_reset")
    expect(requestsTo("/v1/runs/run_reset")).toHaveLength(2)
  })

  it("does not retry a signal or a cancel", async () => {
    const busy = await rejection(client().signalRun("run_busy", { action: "approve" }))
    expect(busy).toMatchObject({ status: 503, reason_code: "STORAGE_UNAVAILABLE", retry_after: 0 })
    expect(requestsTo("/v1/runs/run_busy/signal")).toHaveLength(1)
    const reset = await rejection(client().cancelRun("run_reset"))
    expect(reset).toBeInstanceOf(ConnectionError)
    expect(requestsTo("/v1/runs/run_reset/cancel")).toHaveLength(1)
  })

  it("gives up at once when retry-after is longer than it waits on its own", async () => {
    const limited = await rejection(client().getRun("run_limited"))
    expect(limited).toMatchObject({ status: 429, reason_code: "RATE_LIMITED", retry_after: 120 })
    expect(requestsTo("/v1/runs/run_limited")).toHaveLength(1)
  })

  it("does not retry 4xx refusals", async () => {
    await rejection(client().getRun("run_missing"))
    expect(requestsTo("/v1/runs/run_missing")).toHaveLength(1)
  })
})

describe("streamEvents", () => {
  it("resumes after a cut and an early end with Last-Event-ID: no gap, no duplicate", async () => {
    const events = await collect(client().streamEvents("run_cut"))
    expect(events).toEqual([1, 2, 3, 4, 5, 6].map((seq) => event(seq)))
    const connections = requestsTo("/v1/runs/run_cut/events/stream")
    expect(connections.map((c) => c.headers["last-event-id"])).toEqual([undefined, "3", "5"])
    for (const c of connections)
      expect(c.headers).toMatchObject({ authorization: `Bearer ${API_KEY}`, accept: "text/event-stream" })
  })

  it("starts after afterSeq", async () => {
    const events = await collect(client().streamEvents("run_tail", { afterSeq: 4 }))
    expect(events.map((e) => e.seq)).toEqual([5, 6])
    expect(requestsTo("/v1/runs/run_tail/events/stream")[0]!.headers["last-event-id"]).toBe("4")
    const invalid = await rejection(collect(client().streamEvents("run_tail", { afterSeq: -1 })))
    expect(invalid).toMatchObject({ status: 400, reason_code: "VALIDATION_FAILED" })
    expect(requestsTo("/v1/runs/run_tail/events/stream")).toHaveLength(2)
  })

  it("ends when a terminal run has nothing after afterSeq", async () => {
    expect(await collect(client().streamEvents("run_done", { afterSeq: 3 }))).toEqual([])
    expect(requestsTo("/v1/runs/run_done/events/stream")).toHaveLength(1)
    expect(requestsTo("/v1/runs/run_done")).toHaveLength(1)
  })

  it("reconnects a silent connection after the idle timeout", async () => {
    const events = await collect(client({ streamIdleTimeoutMs: 250 }).streamEvents("run_idle"))
    expect(events.map((e) => [e.seq, e.type])).toEqual([
      [1, "run.queued"],
      [2, "run.cancelled"]
    ])
    const connections = requestsTo("/v1/runs/run_idle/events/stream")
    expect(connections.map((c) => c.headers["last-event-id"])).toEqual([undefined, "1"])
  })

  it("retries a 503 before the stream starts", async () => {
    const events = await collect(client().streamEvents("run_flakystream"))
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6])
    expect(requestsTo("/v1/runs/run_flakystream/events/stream")).toHaveLength(2)
  })

  it("rejects with an ApiError for a 404 before the stream starts, without retrying", async () => {
    const error = await rejection(collect(client().streamEvents("run_missing")))
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 404, reason_code: "RUN_NOT_FOUND", request_id: "req_env" })
    expect(requestsTo("/v1/runs/run_missing/events/stream")).toHaveLength(1)
  })

  it("gives up after ten connections in a row that bring nothing", async () => {
    const error = await rejection(collect(client().streamEvents("run_broken")))
    expect(error).toBeInstanceOf(ConnectionError)
    expect(requestsTo("/v1/runs/run_broken/events/stream")).toHaveLength(10)
  })

  it("ends the iteration and the connection when the signal aborts", async () => {
    const closed = new Promise<void>((resolve) => streamClosed.set("run_live", resolve))
    const controller = new AbortController()
    const events: RunEvent[] = []
    for await (const e of client().streamEvents("run_live", { signal: controller.signal })) {
      events.push(e)
      // Abort while the client waits for the next event.
      setImmediate(() => controller.abort())
    }
    expect(events.map((e) => e.seq)).toEqual([1])
    await closed
    expect(requestsTo("/v1/runs/run_live/events/stream")).toHaveLength(1)
  })

  it("closes the connection when the consumer breaks out", async () => {
    const closed = new Promise<void>((resolve) => streamClosed.set("run_live", resolve))
    for await (const e of client().streamEvents("run_live")) {
      expect(e.seq).toBe(1)
      break
    }
    await closed
  })

  it("ends on abort even with a fetch that ignores the signal, cancelling the body", async () => {
    let cancelled = false
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(`retry: 5\n\n${frame(event(1))}`))
      },
      cancel() {
        cancelled = true
      }
    })
    const deafFetch: typeof fetch = async () =>
      new Response(body, { status: 200, headers: { "content-type": "text/event-stream" } })
    const controller = new AbortController()
    const events: RunEvent[] = []
    for await (const e of client({ fetch: deafFetch }).streamEvents("run_any", {
      signal: controller.signal
    })) {
      events.push(e)
      setImmediate(() => controller.abort())
    }
    expect(events.map((e) => e.seq)).toEqual([1])
    // The cancel travels up the pipe chain to the body on its own time.
    await vi.waitFor(() => expect(cancelled).toBe(true))
  })

  it("yields nothing and connects nowhere for an aborted signal", async () => {
    expect(await collect(client().streamEvents("run_live", { signal: AbortSignal.abort() }))).toEqual([])
    expect(seen).toEqual([])
  })
})
