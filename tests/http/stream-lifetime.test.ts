/**
 * How long an SSE stream lives, over a real server: HEAD on the stream route
 * starts no stream (and holds no slot), a client that left while its stream
 * was starting frees its slot, and an open stream ends once its key is
 * revoked or expires, while a valid key's stream is left alone.
 */
import { batonRoutes } from "@baton/transport-http"
import { describe, expect, it } from "vitest"
import { ALL_SCOPES, createRun, eventually, expectError, openStream, request } from "./support/Client.js"
import { type Harness, randomKeyString, useHarness } from "./support/Harness.js"

const customer = () => `c${Math.random().toString(36).slice(2, 10)}`

/** A key for a fresh customer, issued in process. */
const freshKey = async (h: Harness, body: Record<string, unknown> = {}) =>
  h.engine.issueKey({ scopes: ALL_SCOPES, customer_id: customer(), ...body })

const head = (h: Harness, key: string, runId: string) =>
  fetch(`${h.baseUrl}/v1/runs/${runId}/events/stream`, {
    method: "HEAD",
    headers: { authorization: `Bearer ${key}` }
  })

describe("HEAD on the stream route", () => {
  const h = useHarness({ sseMaxPerKey: 2 })

  it("answers the headers alone, holding no stream slot and no feed subscription", async () => {
    await eventually(() => h.openFeedSubscriptions() === 0, "earlier streams to be released")
    const { key } = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    for (let i = 0; i < 3; i++) {
      const res = await head(h, key, run.id)
      expect(res.status).toBe(200)
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/)
      expect(await res.text()).toBe("")
    }
    // Nothing was subscribed (a stream subscribes before its response starts).
    expect(h.openFeedSubscriptions()).toBe(0)
    // A cap of 2 still has both slots after 3 HEADs.
    const a = await openStream(h, key, run.id)
    const b = await openStream(h, key, run.id)
    await eventually(() => h.openFeedSubscriptions() === 1, "the run's one shared reader")
    a.abort()
    b.abort()
    await eventually(() => h.openFeedSubscriptions() === 0, "every feed subscription released")
  })

  it("checks as GET does: 401 without a valid key, 404 for another customer's run", async () => {
    const { key } = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    expect((await head(h, randomKeyString(), run.id)).status).toBe(401)
    const other = await freshKey(h)
    expect((await head(h, other.key, run.id)).status).toBe(404)
    expect((await head(h, key, "run_01ARZ3NDEKTSV4RRFFQ69G5FAV")).status).toBe(404)
    const narrow = await h.engine.issueKey({ scopes: ["keys:admin"] })
    expect((await head(h, narrow.key, run.id)).status).toBe(403)
  })

  it("frees the slot of a request whose client left while its stream was starting", async () => {
    const { key } = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    // In process, so the request's signal is aborted before the route runs: its listener can never fire.
    const routes = batonRoutes(h.engine, { sseMaxPerKey: 1 })
    const url = `http://in-process/runs/${run.id}/events/stream`
    const headers = { authorization: `Bearer ${key}` }
    for (let i = 0; i < 3; i++)
      expect((await routes.request(new Request(url, { headers, signal: AbortSignal.abort() }))).status).toBe(
        200
      )
    await eventually(() => h.openFeedSubscriptions() === 0, "the left streams' subscriptions released")
    const live = new AbortController()
    const res = await routes.request(new Request(url, { headers, signal: live.signal }))
    expect(res.status).toBe(200)
    live.abort()
    await res.body?.cancel()
  })
})

describe("an open stream and its key", () => {
  const h = useHarness({})

  /** Waits for the end of `conn`'s stream, returning how long it took from `since`. */
  const endsAfter = async (
    conn: Awaited<ReturnType<typeof openStream>>,
    since: number,
    timeoutMs: number
  ) => {
    await conn.readToEnd(timeoutMs)
    return Date.now() - since
  }

  it("ends within about a second of the key's revocation, and releases its subscription", async () => {
    await eventually(() => h.openFeedSubscriptions() === 0, "earlier streams to be released")
    const issued = await freshKey(h)
    const run = await createRun(h, issued.key, { input: 1, handler: "parked" })
    const conn = await openStream(h, issued.key, run.id)
    await conn.next() // the run's first event: the stream is live
    const revoke = await request(h, "DELETE", `/v1/api-keys/${issued.key_id}`, { key: issued.key })
    expect(revoke.status).toBe(204)
    const revokedAt = Date.now()
    expect(await endsAfter(conn, revokedAt, 3000)).toBeLessThan(1500)
    await eventually(() => h.openFeedSubscriptions() === 0, "the ended stream's subscription")
    // Its events after the revocation never reach it (nor would a new stream).
    expectError(
      await request(h, "GET", `/v1/runs/${run.id}/events/stream`, { key: issued.key }),
      401,
      "AUTH_KEY_INVALID"
    )
  })

  it("ends once the key expires, not before", async () => {
    const expiresAt = Date.now() + 1500
    const issued = await freshKey(h, { expires_at: new Date(expiresAt).toISOString() })
    const run = await createRun(h, issued.key, { input: 1, handler: "parked" })
    const conn = await openStream(h, issued.key, run.id)
    await conn.next()
    const ended = await endsAfter(conn, expiresAt, 4000)
    expect(ended).toBeGreaterThanOrEqual(0)
    expect(ended).toBeLessThan(1500)
  })

  it("leaves a valid key's stream open and delivering", async () => {
    const issued = await freshKey(h)
    const run = await createRun(h, issued.key, { input: 1, handler: "parked" })
    const conn = await openStream(h, issued.key, run.id)
    await conn.next()
    // Several re-checks pass meanwhile (a wait is the point: nothing may end the stream in it); the
    // stream is still there for the run's end.
    await new Promise((resolve) => setTimeout(resolve, 1600))
    const cancel = await request(h, "POST", `/v1/runs/${run.id}/cancel`, { key: issued.key, json: {} })
    expect(cancel.status).toBe(202)
    const rest = await conn.readToEnd(3000)
    expect(rest.at(-1)?.data.type).toBe("run.cancelled")
  })
})
