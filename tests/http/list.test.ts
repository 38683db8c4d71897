/**
 * SPEC §4 `GET /runs`: filters, limit, and cursor pagination that is stable
 * under inserts. Every test lists the runs of a fresh customer.
 */
import { describe, expect, it } from "vitest"
import {
  createRun,
  eventually,
  expectError,
  type Json,
  newCustomer,
  request,
  waitForStatus
} from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const list = async (key: string, query = ""): Promise<Json> => {
  const res = await request(h, "GET", `/v1/runs${query}`, { key })
  expect(res.status, res.text).toBe(200)
  expect(Object.keys(res.body).sort()).toEqual(["data", "has_more", "next_cursor", "request_id"])
  return res.body
}
const ids = (page: Json): string[] => page.data.map((r: { id: string }) => r.id)

/** Waits until the wall clock has passed `ms` (so the next run is created strictly later). */
const after = (ms: number) => eventually(() => Date.now() > ms, `the clock to pass ${ms}`)

describe("GET /v1/runs", () => {
  it("lists the caller's runs newest first, with has_more false and next_cursor null on the last page", async () => {
    const { key } = await newCustomer(h)
    const a = await createRun(h, key, { input: 1, handler: "parked" })
    await after(Date.parse(a.created_at))
    const b = await createRun(h, key, { input: 2, handler: "parked" })
    const page = await list(key)
    expect(ids(page)).toEqual([b.id, a.id])
    expect(page.has_more).toBe(false)
    expect(page.next_cursor).toBeNull()
    expect(page.data[0]).toMatchObject({ id: b.id, status: "queued", input: 2 })
  })

  it("filters by status (comma list), handler and metadata[k]=v", async () => {
    const { key } = await newCustomer(h)
    const queued = await createRun(h, key, { input: 1, handler: "parked", metadata: { team: "a", n: 1 } })
    const cancelled = await createRun(h, key, { input: 2, handler: "parked", metadata: { team: "b" } })
    expect((await request(h, "POST", `/v1/runs/${cancelled.id}/cancel`, { key, json: {} })).body.status).toBe(
      "cancelled"
    )
    const succeeded = await createRun(h, key, { input: 3, metadata: { team: "a", flag: true } })
    await waitForStatus(h, key, succeeded.id, "succeeded")

    expect(new Set(ids(await list(key, "?status=queued,cancelled")))).toEqual(
      new Set([queued.id, cancelled.id])
    )
    expect(ids(await list(key, "?status=succeeded"))).toEqual([succeeded.id])
    expect(ids(await list(key, "?status=running,awaiting_input"))).toEqual([])
    expect(new Set(ids(await list(key, "?handler=parked")))).toEqual(new Set([queued.id, cancelled.id]))
    expect(ids(await list(key, "?handler=default"))).toEqual([succeeded.id])
    expect(new Set(ids(await list(key, "?metadata[team]=a")))).toEqual(new Set([queued.id, succeeded.id]))
    expect(new Set(ids(await list(key, `?${encodeURI("metadata[team]")}=a`)))).toEqual(
      new Set([queued.id, succeeded.id])
    )
    expect(ids(await list(key, "?metadata[team]=a&metadata[n]=1"))).toEqual([queued.id])
    expect(ids(await list(key, "?metadata[flag]=true"))).toEqual([succeeded.id])
    expect(ids(await list(key, "?metadata[team]=c"))).toEqual([])
    expect(ids(await list(key, "?status=queued&handler=parked&metadata[team]=a"))).toEqual([queued.id])
  })

  it("filters by created_after and created_before", async () => {
    const { key } = await newCustomer(h)
    const early = await createRun(h, key, { input: 1, handler: "parked" })
    await after(Date.parse(early.created_at) + 1)
    const middle = new Date(Date.now()).toISOString()
    await after(Date.parse(middle) + 1)
    const late = await createRun(h, key, { input: 2, handler: "parked" })
    expect(ids(await list(key, `?created_after=${middle}`))).toEqual([late.id])
    expect(ids(await list(key, `?created_before=${middle}`))).toEqual([early.id])
    expect(ids(await list(key, `?created_after=${middle}&created_before=${middle}`))).toEqual([])
  })

  it("pages with limit and next_cursor, stable under inserts: no run twice, none skipped", async () => {
    const { key } = await newCustomer(h)
    const created: string[] = []
    for (let i = 0; i < 5; i++) created.push((await createRun(h, key, { input: i, handler: "parked" })).id)
    const newestFirst = [...created].reverse()

    const first = await list(key, "?limit=2")
    expect(first.data).toHaveLength(2)
    expect(first.has_more).toBe(true)
    expect(typeof first.next_cursor).toBe("string")
    // A run created between pages is not in the pages that follow.
    const inserted = await createRun(h, key, { input: "late", handler: "parked" })
    const second = await list(key, `?limit=2&cursor=${encodeURIComponent(first.next_cursor)}`)
    expect(second.has_more).toBe(true)
    const third = await list(key, `?limit=2&cursor=${encodeURIComponent(second.next_cursor)}`)
    expect(third.has_more).toBe(false)
    expect(third.next_cursor).toBeNull()
    expect([...ids(first), ...ids(second), ...ids(third)]).toEqual(newestFirst)
    // The new run heads a fresh listing.
    expect(ids(await list(key, "?limit=1"))).toEqual([inserted.id])
    // limit=100 is allowed.
    expect(ids(await list(key, "?limit=100"))).toHaveLength(6)
  })

  it("refuses limit outside 1..100, bad filters and forged cursors with 400 VALIDATION_FAILED", async () => {
    const { key } = await newCustomer(h)
    const forged = [
      "not-a-cursor",
      Buffer.from("hello").toString("base64url"),
      Buffer.from(JSON.stringify({ c: "x", i: 1 })).toString("base64url"),
      "%00%01"
    ]
    const queries = [
      "limit=101",
      "limit=0",
      "limit=-1",
      "limit=abc",
      "limit=1.5",
      "status=bogus",
      "status=queued,bogus",
      "created_after=yesterday",
      "created_before=2026-13-45",
      "handler=has%20space",
      ...forged.map((c) => `cursor=${c}`)
    ]
    for (const q of queries) {
      const res = await request(h, "GET", `/v1/runs?${q}`, { key })
      expectError(res, 400, "VALIDATION_FAILED")
      expect(Array.isArray(res.body.details), q).toBe(true)
    }
  })
})
