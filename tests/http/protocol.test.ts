/**
 * What every response shares (SPEC §4): request ids, unknown routes, health
 * probes, and CORS when the server is configured for browsers.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createRun, expectError, request } from "./support/Client.js"
import { type Harness, startHarness } from "./support/Harness.js"

let h: Harness
let withCors: Harness
let whole: Harness
const ORIGIN = "https://app.example.com"

beforeAll(async () => {
  ;[h, withCors, whole] = await Promise.all([
    startHarness(),
    startHarness({ corsOrigins: [ORIGIN] }),
    startHarness({ compose: "app" })
  ])
})
afterAll(async () => {
  await Promise.all([h?.close(), withCors?.close(), whole?.close()])
})

const GENERATED_ID = /^req_[A-Za-z0-9_-]+$/

describe("request ids", () => {
  it("puts x-request-id on every response and the same request_id in every JSON body", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const responses = [
      await request(h, "GET", "/healthz"),
      await request(h, "GET", "/readyz"),
      await request(h, "GET", "/v1/runs", { key: h.operatorKey }),
      await request(h, "GET", `/v1/runs/${run.id}`, { key: h.operatorKey }),
      await request(h, "GET", `/v1/runs/${run.id}/events`, { key: h.operatorKey }),
      await request(h, "GET", "/v1/api-keys", { key: h.operatorKey }),
      await request(h, "GET", "/v1/runs"), // 401
      await request(h, "GET", "/v1/runs", { key: "key_nope:nope" }), // 401
      await request(h, "GET", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV", { key: h.operatorKey }), // 404
      await request(h, "GET", "/v1/no-such-route", { key: h.operatorKey }), // 404 route
      await request(h, "POST", "/v1/runs", { key: h.operatorKey, json: { input: 1 } }), // 400
      await request(h, "DELETE", "/v1/api-keys/key_abcdefghijklmnopqrstuvwx", { key: h.operatorKey }) // 404
    ]
    const seen = new Set<string>()
    for (const res of responses) {
      // `request` checked header and body agree; here: generated ones look alike and are unique.
      const id = res.headers.get("x-request-id")!
      expect(id).toMatch(GENERATED_ID)
      expect(res.body, `a JSON body for ${res.status}`).toBeDefined()
      expect(seen.has(id)).toBe(false)
      seen.add(id)
    }
    // 204 has no body, but the header.
    const issued = await request(h, "POST", "/v1/api-keys", {
      key: h.operatorKey,
      json: { scopes: ["runs:read"] }
    })
    const revoked = await request(h, "DELETE", `/v1/api-keys/${issued.body.key_id}`, { key: h.operatorKey })
    expect(revoked.status).toBe(204)
    expect(revoked.headers.get("x-request-id")).toMatch(GENERATED_ID)
  })

  it("keeps a sane client-sent x-request-id, on success and on error", async () => {
    for (const id of ["client-req-123", "trace.abc:def_1", "A".repeat(64)]) {
      const ok = await request(h, "GET", "/v1/runs", { key: h.operatorKey, headers: { "x-request-id": id } })
      expect(ok.headers.get("x-request-id")).toBe(id)
      expect(ok.body.request_id).toBe(id)
      const err = await request(h, "GET", "/v1/runs", { headers: { "x-request-id": id } })
      expect(err.status).toBe(401)
      expect(err.body.request_id).toBe(id)
      const health = await request(h, "GET", "/healthz", { headers: { "x-request-id": id } })
      expect(health.body.request_id).toBe(id)
    }
  })

  it("replaces an insane client-sent x-request-id (spaces, 300 characters, markup, control characters)", async () => {
    for (const id of [
      "has spaces in it",
      "x".repeat(300),
      "x".repeat(129),
      "<script>",
      "a\tb",
      'quo"te',
      "semi;colon"
    ]) {
      const res = await request(h, "GET", "/v1/runs", { key: h.operatorKey, headers: { "x-request-id": id } })
      expect(res.status).toBe(200)
      const got = res.headers.get("x-request-id")
      expect(got).not.toBe(id)
      expect(got).toMatch(GENERATED_ID)
      expect(res.body.request_id).toBe(got)
    }
  })
})

describe("routes", () => {
  it("answers an unknown route under /v1 with 404 ROUTE_NOT_FOUND (JSON envelope)", async () => {
    const attempts: Array<[string, string]> = [
      ["GET", "/v1/nope"],
      ["GET", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV/nope"],
      ["PUT", "/v1/runs"],
      ["PATCH", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
      ["DELETE", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
      ["GET", "/v1/api-keys/key_abcdefghijklmnopqrstuvwx"]
    ]
    for (const [method, path] of attempts) {
      const res = await request(h, method, path, { key: h.operatorKey })
      expectError(res, 404, "ROUTE_NOT_FOUND")
    }
  })

  it("answers unknown paths outside /v1 with 404 ROUTE_NOT_FOUND when served by batonApp", async () => {
    for (const [method, path] of [
      ["GET", "/"],
      ["GET", "/nope"],
      ["POST", "/runs"],
      ["GET", "/v2/runs"]
    ] as const)
      expectError(await request(whole, method, path), 404, "ROUTE_NOT_FOUND")
    expectError(await request(whole, "GET", "/v1/nope", { key: whole.operatorKey }), 404, "ROUTE_NOT_FOUND")
    // The same API behind it.
    expect((await request(whole, "GET", "/healthz")).status).toBe(200)
    const run = await createRun(whole, whole.operatorKey, { input: 1, handler: "parked" })
    expect((await request(whole, "GET", `/v1/runs/${run.id}`, { key: whole.operatorKey })).status).toBe(200)
  })

  it("answers GET /healthz and GET /readyz with 200 and no auth", async () => {
    const health = await request(h, "GET", "/healthz")
    expect(health.status).toBe(200)
    expect(health.body.status).toBe("ok")
    const ready = await request(h, "GET", "/readyz")
    expect(ready.status).toBe(200)
    expect(ready.body.status).toBe("ready")
  })
})

describe("CORS", () => {
  const preflight = (harness: Harness, origin: string, path = "/v1/runs") =>
    request(harness, "OPTIONS", path, {
      headers: {
        origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type,idempotency-key,last-event-id"
      }
    })

  const list = (value: string | null) => (value ?? "").toLowerCase().split(/\s*,\s*/)

  it("answers a preflight from a listed origin without auth, allowing the headers a client needs", async () => {
    for (const path of ["/v1/runs", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV/events/stream"]) {
      const res = await preflight(withCors, ORIGIN, path)
      expect(res.status).toBeLessThan(300)
      expect(res.headers.get("access-control-allow-origin")).toBe(ORIGIN)
      const allowed = list(res.headers.get("access-control-allow-headers"))
      for (const header of ["authorization", "last-event-id", "idempotency-key", "content-type"])
        expect(allowed, header).toContain(header)
      const methods = list(res.headers.get("access-control-allow-methods"))
      for (const method of ["get", "post", "delete"]) expect(methods).toContain(method)
    }
  })

  it("exposes x-request-id and idempotent-replayed to a listed origin, on success and on error", async () => {
    const ok = await request(withCors, "GET", "/v1/runs", {
      key: withCors.operatorKey,
      headers: { origin: ORIGIN }
    })
    expect(ok.status).toBe(200)
    expect(ok.headers.get("access-control-allow-origin")).toBe(ORIGIN)
    const exposed = list(ok.headers.get("access-control-expose-headers"))
    expect(exposed).toContain("x-request-id")
    expect(exposed).toContain("idempotent-replayed")
    // A browser must be able to read an error too.
    const err = await request(withCors, "GET", "/v1/runs", { headers: { origin: ORIGIN } })
    expect(err.status).toBe(401)
    expect(err.headers.get("access-control-allow-origin")).toBe(ORIGIN)
  })

  it("gives an unlisted origin no access-control-allow-origin", async () => {
    const res = await preflight(withCors, "https://evil.example.com")
    expect(res.headers.get("access-control-allow-origin")).toBeNull()
    const get = await request(withCors, "GET", "/v1/runs", {
      key: withCors.operatorKey,
      headers: { origin: "https://evil.example.com" }
    })
    expect(get.headers.get("access-control-allow-origin")).toBeNull()
  })

  it("sends no CORS headers at all when no origins are configured", async () => {
    const pre = await preflight(h, ORIGIN)
    const get = await request(h, "GET", "/v1/runs", { key: h.operatorKey, headers: { origin: ORIGIN } })
    for (const res of [pre, get])
      for (const name of res.headers.keys()) expect(name.startsWith("access-control-"), name).toBe(false)
  })
})
