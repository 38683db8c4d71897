/**
 * Per-key limits over a real server: the token bucket (429 RATE_LIMITED with
 * the envelope and `retry-after`) and the cap on open SSE streams, whose
 * slots come back when a stream is closed, aborted or ends.
 */
import { describe, expect, it } from "vitest"
import {
  ALL_SCOPES,
  createRun,
  eventually,
  expectError,
  openStream,
  request,
  waitForStatus
} from "./support/Client.js"
import { type Harness, randomKeyString, useHarness } from "./support/Harness.js"

/** A key for a fresh customer, issued in process so the operator's own bucket is not spent. */
const freshKey = async (h: Harness): Promise<string> =>
  (
    await h.engine.issueKey({
      scopes: ALL_SCOPES,
      customer_id: `c${Math.random().toString(36).slice(2, 10)}`
    })
  ).key

describe("rate limit per key", () => {
  const h = useHarness({ rateLimit: { perSecond: 1, burst: 3 } })

  it("lets a burst through, then answers 429 RATE_LIMITED with the envelope and retry-after", async () => {
    const key = await freshKey(h)
    for (let i = 0; i < 3; i++) expect((await request(h, "GET", "/v1/runs", { key })).status).toBe(200)
    const limited = await request(h, "GET", "/v1/runs", { key })
    expectError(limited, 429, "RATE_LIMITED")
    expect(limited.headers.get("retry-after")).toBe("1")
    // Every /v1 route counts, the stream too.
    expectError(await request(h, "GET", "/v1/api-keys", { key }), 429, "RATE_LIMITED")
    // Another key has a bucket of its own.
    expect((await request(h, "GET", "/v1/runs", { key: await freshKey(h) })).status).toBe(200)
    // A token comes back after 1 s (a slow rate: four requests in a row never refill one on a loaded
    // machine); refused requests take none, so asking until it is there changes nothing.
    const deadline = Date.now() + 5000
    let status = 429
    while (status === 429 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      status = (await request(h, "GET", "/v1/runs", { key })).status
    }
    expect(status).toBe(200)
  })

  it("authenticates first: a bad key is 401, never 429, and spends no one's tokens", async () => {
    const key = await freshKey(h)
    const [keyId] = key.split(":")
    for (let i = 0; i < 10; i++)
      expectError(
        await request(h, "GET", "/v1/runs", { key: `${keyId}:${"A".repeat(43)}` }),
        401,
        "AUTH_KEY_INVALID"
      )
    expectError(await request(h, "GET", "/v1/runs", { key: randomKeyString() }), 401, "AUTH_KEY_INVALID")
    expect((await request(h, "GET", "/v1/runs", { key })).status).toBe(200)
  })
})

describe("open streams per key", () => {
  const h = useHarness({ sseMaxPerKey: 2 })

  const streamStatus = async (key: string, runId: string): Promise<number> => {
    const res = await request(h, "GET", `/v1/runs/${runId}/events/stream`, { key })
    return res.status
  }

  /** Opens a stream as soon as the key has a free slot again; the slot is held until `abort()`. */
  const openWhenFree = async (key: string, runId: string): Promise<{ abort: () => void }> => {
    let opened: { abort: () => void } | null = null
    await eventually(async () => {
      const controller = new AbortController()
      const res = await fetch(`${h.baseUrl}/v1/runs/${runId}/events/stream`, {
        headers: { authorization: `Bearer ${key}` },
        signal: controller.signal
      })
      if (res.status !== 200) {
        expectError(
          { status: res.status, headers: res.headers, text: "", body: await res.json() },
          429,
          "RATE_LIMITED"
        )
        return false
      }
      opened = { abort: () => controller.abort() }
      return true
    }, "a free stream slot")
    return opened!
  }

  it("refuses a stream beyond the cap with a JSON 429 before it starts; another key is not affected", async () => {
    const key = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    const a = await openStream(h, key, run.id)
    const b = await openStream(h, key, run.id)
    const refused = await request(h, "GET", `/v1/runs/${run.id}/events/stream`, { key })
    expectError(refused, 429, "RATE_LIMITED")
    expect(refused.headers.get("retry-after")).toBe("1")
    // Other routes are not capped.
    expect((await request(h, "GET", `/v1/runs/${run.id}`, { key })).status).toBe(200)
    const other = await freshKey(h)
    const otherRun = await createRun(h, other, { input: 1, handler: "parked" })
    const c = await openStream(h, other, otherRun.id)
    for (const conn of [a, b, c]) conn.abort()
  })

  it("frees the slot of a stream the client aborts", async () => {
    const key = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    const a = await openStream(h, key, run.id)
    const b = await openStream(h, key, run.id)
    expect(await streamStatus(key, run.id)).toBe(429)
    a.abort()
    const c = await openWhenFree(key, run.id)
    expect(await streamStatus(key, run.id)).toBe(429)
    for (const conn of [b, c]) conn.abort()
    // Through the slot's wrapper, an abort still reaches the stream: its feed subscription ends.
    await eventually(() => h.openFeedSubscriptions() === 0, "every feed subscription released")
  })

  it("frees the slot of a stream whose body the client closes", async () => {
    const key = await freshKey(h)
    const run = await createRun(h, key, { input: 1, handler: "parked" })
    const a = await fetch(`${h.baseUrl}/v1/runs/${run.id}/events/stream`, {
      headers: { authorization: `Bearer ${key}` }
    })
    expect(a.status).toBe(200)
    const b = await openStream(h, key, run.id)
    expect(await streamStatus(key, run.id)).toBe(429)
    await a.body!.cancel()
    const c = await openWhenFree(key, run.id)
    for (const conn of [b, c]) conn.abort()
  })

  it("frees the slot of a stream that ends with its run, and of a stream refused with 404", async () => {
    const key = await freshKey(h)
    const parked = await createRun(h, key, { input: 1, handler: "parked" })
    const done = await createRun(h, key, { input: "x" })
    await waitForStatus(h, key, done.id, "succeeded")
    const a = await openStream(h, key, parked.id)
    const ending = await openStream(h, key, done.id)
    expect((await ending.readToEnd()).at(-1)?.data.type).toBe("run.worker.succeeded")
    const b = await openWhenFree(key, parked.id)
    expect(await streamStatus(key, parked.id)).toBe(429)
    a.abort()
    b.abort()
    // A refused stream never held a slot.
    await eventually(async () => (await streamStatus(key, "run_nope")) === 404, "404 for a bad run id")
    for (let i = 0; i < 5; i++) expect(await streamStatus(key, "run_01ARZ3NDEKTSV4RRFFQ69G5FAV")).toBe(404)
    const c = await openStream(h, key, parked.id)
    const d = await openStream(h, key, parked.id)
    for (const conn of [c, d]) conn.abort()
  })
})
