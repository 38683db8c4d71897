/**
 * SPEC §4 `POST /runs` (idempotency, validation, media types, body size),
 * `GET /runs/{id}` and `GET /runs/{id}/events` over a real server.
 */
import { describe, expect, it } from "vitest"
import {
  allEvents,
  createRun,
  expectContiguous,
  expectError,
  getRun,
  newCustomer,
  newIdempotencyKey,
  request,
  waitForStatus
} from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const RUN_ID = /^run_[0-9A-HJKMNP-TV-Z]{26}$/
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

/** POST /v1/runs; `idem` null sends no idempotency-key header. */
const post = (key: string, json: unknown, idem: string | null = newIdempotencyKey()) =>
  request(h, "POST", "/v1/runs", { key, json, headers: idem === null ? {} : { "idempotency-key": idem } })

describe("POST /v1/runs", () => {
  it("creates a queued run: 201 with the run of SPEC §1", async () => {
    const res = await post(h.operatorKey, {
      input: { user_query: "hello" },
      metadata: { team: "a", n: 1, flag: true },
      handler: "parked",
      limits: { max_steps: 5 }
    })
    expect(res.status).toBe(201)
    expect(res.headers.get("idempotent-replayed")).toBeNull()
    const run = res.body
    expect(run).toMatchObject({
      status: "queued",
      handler: "parked",
      input: { user_query: "hello" },
      metadata: { team: "a", n: 1, flag: true },
      output: null,
      error: null,
      awaiting_input: null,
      limits: {
        max_steps: 5,
        max_duration_ms: 3_600_000,
        max_step_attempts: 3,
        max_tokens: null,
        max_cost_usd: null
      },
      usage: { steps: 0, attempts: 1, tokens: 0, cost_usd: 0 },
      last_seq: 1,
      started_at: null,
      finished_at: null
    })
    expect(run.id).toMatch(RUN_ID)
    expect(run.created_at).toMatch(ISO)
    expect(run.updated_at).toMatch(ISO)
    expect(run.replayed).toBeUndefined()
    // The body is the run as GET shows it.
    const { request_id: _, ...created } = run
    const { request_id: __, ...fetched } = await getRun(h, h.operatorKey, run.id)
    expect(fetched).toEqual(created)
  })

  it("defaults the handler to `default`, which a worker executes to success", async () => {
    const run = (await post(h.operatorKey, { input: { a: 1 } })).body
    expect(run.handler).toBe("default")
    const done = await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    expect(done.output).toEqual({ echo: { a: 1 } })
    expect(done.finished_at).toMatch(ISO)
  })

  it("redacts secrets in the input before storing or returning it", async () => {
    const res = await post(h.operatorKey, { input: { q: "x", password: "hunter2" }, handler: "parked" })
    expect(res.status).toBe(201)
    expect(res.text).not.toContain("hunter2")
    expect(res.body.input.q).toBe("x")
    expect(res.body.input.password).not.toBe("hunter2")
  })

  describe("idempotency", () => {
    it("requires the idempotency-key header: 400 IDEMPOTENCY_KEY_MISSING", async () => {
      expectError(await post(h.operatorKey, { input: 1 }, null), 400, "IDEMPOTENCY_KEY_MISSING")
    })

    it("refuses an empty key with 400", async () => {
      const res = await post(h.operatorKey, { input: 1 }, "")
      expect(res.status).toBe(400)
      expect(["IDEMPOTENCY_KEY_MISSING", "IDEMPOTENCY_KEY_INVALID"]).toContain(res.body.reason_code)
    })

    it("refuses a key longer than 255 characters, or not printable, with 400 IDEMPOTENCY_KEY_INVALID", async () => {
      expectError(await post(h.operatorKey, { input: 1 }, "k".repeat(300)), 400, "IDEMPOTENCY_KEY_INVALID")
      expectError(await post(h.operatorKey, { input: 1 }, "k".repeat(256)), 400, "IDEMPOTENCY_KEY_INVALID")
      expectError(await post(h.operatorKey, { input: 1 }, "has space"), 400, "IDEMPOTENCY_KEY_INVALID")
      expect((await post(h.operatorKey, { input: 1, handler: "parked" }, "k".repeat(255))).status).toBe(201)
    })

    it("replays the same key and body: 200, the run as it is now, replayed: true, idempotent-replayed header", async () => {
      const idem = newIdempotencyKey()
      const body = { input: { q: "replay" }, metadata: { a: "1" } }
      const first = await post(h.operatorKey, body, idem)
      expect(first.status).toBe(201)
      await waitForStatus(h, h.operatorKey, first.body.id, "succeeded")
      // The same body with another key order is the same request.
      const again = await post(h.operatorKey, { metadata: { a: "1" }, input: { q: "replay" } }, idem)
      expect(again.status).toBe(200)
      expect(again.headers.get("idempotent-replayed")).toBe("true")
      expect(again.body).toMatchObject({ id: first.body.id, replayed: true, status: "succeeded" })
      expect(again.body.request_id).not.toBe(first.body.request_id)
    })

    it("refuses the same key with another body: 409 IDEMPOTENCY_KEY_REUSED", async () => {
      const idem = newIdempotencyKey()
      expect((await post(h.operatorKey, { input: 1, handler: "parked" }, idem)).status).toBe(201)
      expectError(
        await post(h.operatorKey, { input: 2, handler: "parked" }, idem),
        409,
        "IDEMPOTENCY_KEY_REUSED"
      )
      expectError(
        await post(h.operatorKey, { input: 1, handler: "parked", metadata: { x: 1 } }, idem),
        409,
        "IDEMPOTENCY_KEY_REUSED"
      )
    })

    it("creates exactly one run for 50 concurrent identical requests", async () => {
      const { key } = await newCustomer(h)
      const idem = newIdempotencyKey()
      const body = { input: { n: 50 }, handler: "parked" }
      const responses = await Promise.all(Array.from({ length: 50 }, () => post(key, body, idem)))
      const statuses = responses.map((r) => r.status).sort()
      expect(statuses.filter((s) => s === 201)).toHaveLength(1)
      expect(statuses.filter((s) => s === 200)).toHaveLength(49)
      const ids = new Set(responses.map((r) => r.body.id))
      expect(ids.size).toBe(1)
      for (const r of responses.filter((x) => x.status === 200)) {
        expect(r.body.replayed).toBe(true)
        expect(r.headers.get("idempotent-replayed")).toBe("true")
      }
      const list = await request(h, "GET", "/v1/runs", { key })
      expect(list.body.data.map((r: { id: string }) => r.id)).toEqual([...ids])
    })
  })

  describe("refusals", () => {
    it("refuses an unknown handler with 422 HANDLER_NOT_FOUND", async () => {
      expectError(
        await post(h.operatorKey, { input: 1, handler: "nobody-has-this" }),
        422,
        "HANDLER_NOT_FOUND"
      )
    })

    it("refuses ill-typed bodies with 400 VALIDATION_FAILED and details", async () => {
      const bodies: unknown[] = [
        {},
        { input: 1, metadata: "x" },
        { input: 1, metadata: { k: { nested: true } } },
        { input: 1, handler: 5 },
        { input: 1, handler: "has space" },
        { input: 1, limits: { max_steps: "many" } },
        { input: 1, limits: { max_steps: 0 } },
        [],
        null,
        "input"
      ]
      for (const body of bodies) {
        const res = await post(h.operatorKey, body)
        expectError(res, 400, "VALIDATION_FAILED")
        expect(Array.isArray(res.body.details), JSON.stringify(body)).toBe(true)
        expect(res.body.details.length).toBeGreaterThan(0)
        for (const d of res.body.details) {
          expect(typeof d.path).toBe("string")
          expect(typeof d.message).toBe("string")
        }
      }
      const res = await post(h.operatorKey, { input: 1, metadata: "x" })
      expect(res.body.details.map((d: { path: string }) => d.path).join(" ")).toContain("metadata")
    })

    it("refuses a body that is not JSON with 400 MALFORMED_JSON", async () => {
      for (const raw of ["{", "{input: 1}", "not json", '{"input": 1}}']) {
        const res = await request(h, "POST", "/v1/runs", {
          key: h.operatorKey,
          raw,
          headers: { "content-type": "application/json", "idempotency-key": newIdempotencyKey() }
        })
        expectError(res, 400, "MALFORMED_JSON")
      }
    })

    it("refuses a body that is not application/json with 415 UNSUPPORTED_MEDIA_TYPE", async () => {
      const json = JSON.stringify({ input: 1 })
      for (const type of ["text/plain", "application/x-www-form-urlencoded", undefined]) {
        const res = await request(h, "POST", "/v1/runs", {
          key: h.operatorKey,
          raw: json,
          headers: {
            "idempotency-key": newIdempotencyKey(),
            ...(type === undefined ? {} : { "content-type": type })
          }
        })
        expectError(res, 415, "UNSUPPORTED_MEDIA_TYPE")
      }
      // JSON with a charset is JSON.
      const ok = await request(h, "POST", "/v1/runs", {
        key: h.operatorKey,
        raw: JSON.stringify({ input: 1, handler: "parked" }),
        headers: { "idempotency-key": newIdempotencyKey(), "content-type": "application/json; charset=utf-8" }
      })
      expect(ok.status).toBe(201)
    })
  })
})

describe("GET /v1/runs/{id}", () => {
  it("answers 200 with the run", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const res = await request(h, "GET", `/v1/runs/${run.id}`, { key: h.operatorKey })
    expect(res.status).toBe(200)
    expect(res.body).toMatchObject({ id: run.id, status: "queued", input: 1 })
  })

  it("answers 404 RUN_NOT_FOUND for a malformed id and for an unknown one", async () => {
    for (const id of [
      "nope",
      "run_",
      "run_01ARZ3NDEKTSV4RRFFQ69G5FAV",
      "RUN_01ARZ3NDEKTSV4RRFFQ69G5FAV",
      "%20"
    ]) {
      expectError(await request(h, "GET", `/v1/runs/${id}`, { key: h.operatorKey }), 404, "RUN_NOT_FOUND")
    }
  })
})

describe("GET /v1/runs/{id}/events", () => {
  it("pages with after_seq and limit; next_after_seq continues; the envelope has no storage fields", async () => {
    const run = await createRun(h, h.operatorKey, {
      input: { deltas: ["a", "b", "c", "d", "e"] },
      handler: "stream"
    })
    const done = await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    // queued, started, step.started, 5 × progress, step.done, succeeded
    expect(done.last_seq).toBe(10)

    const seen: number[] = []
    let after = 0
    const pages: boolean[] = []
    for (;;) {
      const res = await request(h, "GET", `/v1/runs/${run.id}/events?after_seq=${after}&limit=3`, {
        key: h.operatorKey
      })
      expect(res.status).toBe(200)
      expect(res.body.data.length).toBeLessThanOrEqual(3)
      seen.push(...res.body.data.map((e: { seq: number }) => e.seq))
      pages.push(res.body.has_more)
      if (res.body.data.length > 0) expect(res.body.next_after_seq).toBe(res.body.data.at(-1).seq)
      if (!res.body.has_more) break
      after = res.body.next_after_seq
    }
    expectContiguous(seen)
    expect(seen).toHaveLength(10)
    expect(pages).toEqual([true, true, true, false])

    const events = await allEvents(h, h.operatorKey, run.id)
    expect(events.map((e) => e.type)).toEqual([
      "run.queued",
      "run.started",
      "step.started",
      "step.progress",
      "step.progress",
      "step.progress",
      "step.progress",
      "step.progress",
      "step.done",
      "run.worker.succeeded"
    ])
    for (const e of events) {
      expect(Object.keys(e).sort()).toEqual(["payload", "seq", "timestamp", "type"])
      expect(e.timestamp).toMatch(ISO)
      expect(typeof e.payload.redacted).toBe("boolean")
    }
    expect(events[3].payload.value).toMatchObject({ kind: "content_delta", content_delta: "a" })

    // Past the end: empty, and next_after_seq stays where the caller is.
    const past = await request(h, "GET", `/v1/runs/${run.id}/events?after_seq=10`, { key: h.operatorKey })
    expect(past.body).toMatchObject({ data: [], has_more: false, next_after_seq: 10 })
    // Without parameters: from seq 1.
    const first = await request(h, "GET", `/v1/runs/${run.id}/events`, { key: h.operatorKey })
    expect(first.body.data[0].seq).toBe(1)
  })

  it("refuses bad paging parameters with 400 VALIDATION_FAILED", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    for (const q of [
      "after_seq=-1",
      "after_seq=abc",
      "after_seq=1.5",
      "limit=0",
      "limit=abc",
      "limit=1001"
    ]) {
      expectError(
        await request(h, "GET", `/v1/runs/${run.id}/events?${q}`, { key: h.operatorKey }),
        400,
        "VALIDATION_FAILED"
      )
    }
  })

  it("answers 404 RUN_NOT_FOUND for an unknown run", async () => {
    expectError(
      await request(h, "GET", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV/events", { key: h.operatorKey }),
      404,
      "RUN_NOT_FOUND"
    )
  })
})
