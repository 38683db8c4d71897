/**
 * The HTTP API of SPEC §4 as Hono routes. Handlers stay thin: they parse the
 * request, call one engine method as the authenticated principal, and render
 * the result or the error envelope. Scopes and tenancy are enforced by the
 * engine itself, so in-process callers get the same checks.
 */
import { type BatonEngine, DEFAULT_KEY_CACHE_TTL_MS, type Principal, type RateLimit } from "@baton/core"
import { type Context, Hono } from "hono"
import { bodyLimit } from "hono/body-limit"
import { cors } from "hono/cors"
import { type ApiEnv, errorResponse, fail, requestId, toErrorResponse } from "./Envelope.js"
import { type SseOptions, streamRunEvents } from "./Sse.js"
import { makeStreamSlots, rateLimitPerKey } from "./Throttle.js"

export interface BatonRoutesOptions {
  /** Largest accepted request body (default 1 MiB → 413 BODY_TOO_LARGE). */
  readonly bodyLimitBytes?: number
  /** Origins allowed to call from a browser; empty (default) turns CORS off. */
  readonly corsOrigins?: ReadonlyArray<string>
  readonly sse?: SseOptions
  /**
   * A token bucket per API key, this process: `perSecond` refill, `burst` capacity; over it, 429
   * RATE_LIMITED with `retry-after`. Default: off (the server turns it on, 100/s and 200).
   */
  readonly rateLimit?: RateLimit
  /** Most SSE streams one key holds open at once on this process (429 beyond). Default 0: no cap. */
  readonly sseMaxPerKey?: number
  /**
   * How often an open SSE stream re-checks its API key, ending once the key is revoked or expired
   * (default 500 ms, the key cache's default TTL: about one store read per key per TTL). 0: never.
   */
  readonly sseKeyRecheckMs?: number
}

const MIB = 1024 * 1024

/** Query values for metadata filters: numbers and booleans as such, the rest as strings. */
const metadataValue = (raw: string): string | number | boolean => {
  if (raw === "true") return true
  if (raw === "false") return false
  return raw.trim() !== "" && Number.isFinite(Number(raw)) ? Number(raw) : raw
}

/** A query integer stays a string when it is not one, so validation reports it. */
const queryNumber = (raw: string | undefined): number | string | undefined =>
  raw === undefined ? undefined : /^-?\d+$/.test(raw) ? Number(raw) : raw

const listQuery = (c: Context<ApiEnv>): Record<string, unknown> => {
  const url = new URL(c.req.url)
  // Entries, not assignments: a `__proto__` parameter becomes a key that validation sees (and refuses).
  const query: Array<[string, unknown]> = []
  const metadata: Array<[string, string | number | boolean]> = []
  const statuses: string[] = []
  for (const [key, value] of url.searchParams) {
    const meta = /^metadata\[(.+)\]$/.exec(key)
    if (meta !== null) metadata.push([meta[1]!, metadataValue(value)])
    else if (key === "status") statuses.push(...value.split(",").filter((s) => s.length > 0))
    else if (key === "limit") query.push(["limit", queryNumber(value)])
    else query.push([key, value])
  }
  if (statuses.length > 0) query.push(["status", statuses])
  if (metadata.length > 0) query.push(["metadata", Object.fromEntries(metadata)])
  return Object.fromEntries(query)
}

/** The JSON body of a request: 415 unless JSON, 400 MALFORMED_JSON unless parseable. Empty → `empty`. */
const readJson = async (c: Context<ApiEnv>, empty?: unknown): Promise<unknown> => {
  const text = await c.req.text()
  if (text.trim() === "" && empty !== undefined) return empty
  const type = c.req.header("content-type") ?? ""
  if (!/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(type))
    fail(415, "UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json.")
  try {
    return JSON.parse(text)
  } catch {
    return fail(400, "MALFORMED_JSON", "The body is not valid JSON.")
  }
}

const BEARER = /^Bearer\s+(\S+)\s*$/i

/** Authenticates every route of the API; the principal scopes all that follows. */
const authenticate = (engine: BatonEngine) => async (c: Context<ApiEnv>, next: () => Promise<void>) => {
  if (c.req.method === "OPTIONS") return next()
  const header = c.req.header("authorization")
  if (header === undefined || header.trim() === "")
    fail(401, "AUTH_MISSING_HEADER", "Send Authorization: Bearer <key_id>:<secret>.")
  const match = BEARER.exec(header!)
  if (match === null) fail(401, "AUTH_KEY_INVALID", "The API key is invalid.")
  const principal: Principal = await engine.verifyKey(match![1]!)
  c.set("principal", principal)
  await next()
}

const withRequestId = <T extends object>(c: Context<ApiEnv>, body: T): T & { request_id: string } => ({
  ...body,
  request_id: c.get("requestId")
})

/** Every endpoint of SPEC §4, to mount under `/v1`: `app.route("/v1", batonRoutes(engine))`. */
export const batonRoutes = (engine: BatonEngine, options: BatonRoutesOptions = {}): Hono<ApiEnv> => {
  const app = new Hono<ApiEnv>()
  app.use("*", requestId)
  const origins = options.corsOrigins ?? []
  if (origins.length > 0)
    app.use(
      "*",
      cors({
        origin: [...origins],
        allowMethods: ["GET", "POST", "DELETE", "OPTIONS"],
        allowHeaders: ["Authorization", "Content-Type", "Last-Event-ID", "Idempotency-Key", "X-Request-Id"],
        exposeHeaders: ["x-request-id", "idempotent-replayed", "retry-after"],
        maxAge: 600
      })
    )
  app.use(
    "*",
    bodyLimit({
      maxSize: options.bodyLimitBytes ?? MIB,
      onError: (c) => {
        // The unread rest of the body is still on the socket: this connection cannot be reused.
        c.header("connection", "close")
        return errorResponse(
          c as Context<ApiEnv>,
          413,
          "BODY_TOO_LARGE",
          "The body is larger than the limit."
        )
      }
    })
  )
  app.use("*", authenticate(engine))
  if (options.rateLimit !== undefined) app.use("*", rateLimitPerKey(options.rateLimit))
  const streams = makeStreamSlots({
    maxPerKey: options.sseMaxPerKey ?? 0,
    keyRecheckMs: options.sseKeyRecheckMs ?? DEFAULT_KEY_CACHE_TTL_MS,
    keyStillValid: (principal) => engine.keyStillValid(principal)
  })

  app.post("/runs", async (c) => {
    const body = await readJson(c)
    const key = c.req.header("idempotency-key")
    const result = await engine.createRun(body, {
      ...(key === undefined ? {} : { idempotencyKey: key }),
      requireIdempotencyKey: true,
      principal: c.get("principal")
    })
    switch (result._tag) {
      case "Created":
        return c.json(withRequestId(c, result.run), 201)
      case "Replayed":
        c.header("idempotent-replayed", "true")
        return c.json(withRequestId(c, { ...result.run, replayed: true }), 200)
      case "KeyReused":
        return fail(409, "IDEMPOTENCY_KEY_REUSED", "This idempotency key was used with another body.")
    }
  })

  app.get("/runs", async (c) =>
    c.json(withRequestId(c, await engine.listRuns(listQuery(c), c.get("principal"))), 200)
  )

  app.get("/runs/:id", async (c) =>
    c.json(withRequestId(c, await engine.getRun(c.req.param("id"), c.get("principal"))), 200)
  )

  app.get("/runs/:id/events", async (c) => {
    const query = {
      ...(c.req.query("after_seq") === undefined ? {} : { after_seq: queryNumber(c.req.query("after_seq")) }),
      ...(c.req.query("limit") === undefined ? {} : { limit: queryNumber(c.req.query("limit")) })
    }
    return c.json(
      withRequestId(c, await engine.readEvents(c.req.param("id"), query, c.get("principal"))),
      200
    )
  })

  app.get("/runs/:id/events/stream", async (c) => {
    // Hono answers HEAD with this GET route and drops the body unread, so a stream started here
    // would never end: check as GET does (scope, run, owner), then send the headers alone.
    if (c.req.raw.method === "HEAD") {
      await engine.getRun(c.req.param("id"), c.get("principal"))
      return c.body(null, 200, {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache"
      })
    }
    return streams.guard(c, () => streamRunEvents(c, engine, options.sse ?? {}))
  })

  app.post("/runs/:id/signal", async (c) => {
    const body = await readJson(c)
    const key = c.req.header("idempotency-key")
    const run = await engine.signalRun(c.req.param("id"), body, c.get("principal"), {
      ...(key === undefined ? {} : { idempotencyKey: key })
    })
    return c.json(withRequestId(c, run), 202)
  })

  app.post("/runs/:id/cancel", async (c) => {
    const body = await readJson(c, {})
    return c.json(withRequestId(c, await engine.cancelRun(c.req.param("id"), body, c.get("principal"))), 202)
  })

  app.post("/api-keys", async (c) => {
    const body = await readJson(c)
    return c.json(withRequestId(c, await engine.issueKey(body, c.get("principal"))), 201)
  })

  app.get("/api-keys", async (c) =>
    c.json(withRequestId(c, { data: await engine.listKeys(c.get("principal")) }), 200)
  )

  app.delete("/api-keys/:keyId", async (c) => {
    await engine.revokeKey(c.req.param("keyId"), c.get("principal"))
    return c.body(null, 204)
  })

  // Mounted under a prefix, unmatched paths below it are still ours to answer.
  app.all("*", (c) => errorResponse(c, 404, "ROUTE_NOT_FOUND", "No such route."))
  app.notFound((c) => errorResponse(c, 404, "ROUTE_NOT_FOUND", "No such route."))
  app.onError((error, c) => toErrorResponse(c, error))
  return app
}

/**
 * A whole API app: health routes at the root, the API under `/v1`, and the
 * error envelope for any other path. What the self-host server serves.
 */
export const batonApp = (engine: BatonEngine, options: BatonRoutesOptions = {}): Hono<ApiEnv> => {
  const app = new Hono<ApiEnv>()
  app.route("/", healthRoutes(engine))
  app.route("/v1", batonRoutes(engine, options))
  app.notFound((c) => errorResponse(c, 404, "ROUTE_NOT_FOUND", "No such route."))
  app.onError((error, c) => toErrorResponse(c, error))
  return app
}

/** `GET /healthz` (process up) and `GET /readyz` (storage reachable), no auth. */
export const healthRoutes = (engine: BatonEngine): Hono<ApiEnv> => {
  const app = new Hono<ApiEnv>()
  app.use("*", requestId)
  app.get("/healthz", (c) => c.json(withRequestId(c, { status: "ok" }), 200))
  app.get("/readyz", async (c) => {
    await engine.ping()
    return c.json(withRequestId(c, { status: "ready" }), 200)
  })
  app.onError((error, c) => toErrorResponse(c, error))
  return app
}
