/**
 * Hostile input over a real server: deep and malformed JSON, huge numbers,
 * prototype keys, over-long strings in every field, malformed ids on every
 * route (404 without a store read), and query numbers past what a store holds.
 */
import { describe, expect, it } from "vitest"
import { createRun, expectError, newIdempotencyKey, request } from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const post = (path: string, raw: string, headers: Record<string, string> = {}) =>
  request(h, "POST", path, {
    key: h.operatorKey,
    raw,
    headers: { "content-type": "application/json", "idempotency-key": newIdempotencyKey(), ...headers }
  })

describe("JSON bodies", () => {
  it("answers 1 MiB of unclosed [ with 400 MALFORMED_JSON, promptly, and keeps serving", async () => {
    const started = Date.now()
    expectError(await post("/v1/runs", "[".repeat(1024 * 1024 - 16)), 400, "MALFORMED_JSON")
    expect(Date.now() - started).toBeLessThan(5000)
    expect((await request(h, "GET", "/v1/runs", { key: h.operatorKey })).status).toBe(200)
  })

  it("refuses a deep but well-formed body (nearly 1 MiB of nesting) with 400, not a crash", async () => {
    const depth = 500_000
    const deep = `${"[".repeat(depth)}${"]".repeat(depth)}`
    for (const [path, body] of [
      ["/v1/runs", `{"input":${deep}}`],
      ["/v1/runs", deep],
      ["/v1/api-keys", `{"scopes":["runs:read"],"name":${deep}}`]
    ] as const) {
      const res = await post(path, body)
      expectError(res, 400, "VALIDATION_FAILED")
    }
    // Just past the 64 levels JSON values may have.
    const sixtyFive = `${"[".repeat(65)}${"]".repeat(65)}`
    expectError(await post("/v1/runs", `{"input":${sixtyFive}}`), 400, "VALIDATION_FAILED")
    expect((await post("/v1/runs", `{"input":${"[".repeat(63)}${"]".repeat(63)}}`)).status).toBe(201)
  })

  it("refuses numbers that are not finite, and keeps __proto__ / constructor as plain data or refuses them", async () => {
    expectError(await post("/v1/runs", '{"input":1e400}'), 400, "VALIDATION_FAILED")
    expectError(await post("/v1/runs", '{"input":{"a":-1e999}}'), 400, "VALIDATION_FAILED")
    const odd = await post("/v1/runs", '{"input":{"__proto__":{"polluted":true},"constructor":{"x":1}}}')
    expect(odd.status).toBe(201)
    expect(odd.body.input).toEqual(JSON.parse('{"__proto__":{"polluted":true},"constructor":{"x":1}}'))
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // Metadata is an index: a key that names an object's prototype is refused.
    const meta = await post("/v1/runs", '{"input":1,"metadata":{"__proto__":"x"}}')
    expectError(meta, 400, "VALIDATION_FAILED")
    const filter = await request(h, "GET", "/v1/runs?metadata[__proto__]=x", { key: h.operatorKey })
    expectError(filter, 400, "VALIDATION_FAILED")
  })
})

describe("string lengths", () => {
  const long = (n: number) => "x".repeat(n)

  it("bounds every free-text field of a request", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const cases: Array<[string, string, unknown]> = [
      ["/v1/runs", "handler", { input: 1, handler: long(129) }],
      ["/v1/runs", "metadata key", { input: 1, metadata: { [long(65)]: 1 } }],
      ["/v1/runs", "metadata value", { input: 1, metadata: { k: long(513) } }],
      ["/v1/api-keys", "name", { scopes: ["runs:read"], name: long(201) }],
      ["/v1/api-keys", "customer_id", { scopes: ["runs:read"], customer_id: long(129) }],
      [
        "/v1/api-keys",
        "expires_at",
        { scopes: ["runs:read"], expires_at: `2999-01-01T00:00:00Z${" ".repeat(100)}` }
      ],
      ["/v1/api-keys", "scopes", { scopes: Array.from({ length: 17 }, () => "runs:read") }],
      [`/v1/runs/${run.id}/cancel`, "reason", { reason: long(1001) }],
      [`/v1/runs/${run.id}/signal`, "comment", { action: "approve", comment: long(10_001) }]
    ]
    for (const [path, what, body] of cases) {
      const res = await post(path, JSON.stringify(body))
      expect(res.status, `${what}: ${res.text.slice(0, 200)}`).toBe(400)
      expect(res.body.reason_code, what).toBe("VALIDATION_FAILED")
    }
    const fifty = Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i]))
    expectError(
      await post("/v1/runs", JSON.stringify({ input: 1, metadata: fifty })),
      400,
      "VALIDATION_FAILED"
    )
  })

  it("does not echo a credential quoted in a validation detail", async () => {
    const secret = "Zq9".repeat(15)
    const res = await post(
      "/v1/runs",
      JSON.stringify({
        input: 1,
        metadata: { auth: `Bearer ${secret} ${long(600)}`, k: `key_${"A".repeat(24)}:${secret}` }
      })
    )
    expectError(res, 400, "VALIDATION_FAILED")
    expect(res.text).toContain("[REDACTED]")
    expect(res.text).not.toContain(secret.slice(0, 12))
  })
})

describe("ids and query numbers", () => {
  it("answers a malformed run id with 404 RUN_NOT_FOUND on every run route", async () => {
    for (const id of [
      "nope",
      "run_",
      `run_${"A".repeat(300)}`,
      "run_01ARZ3NDEKTSV4RRFFQ69G5FA%00",
      "..%2F..%2Fetc"
    ]) {
      for (const [method, path, json] of [
        ["GET", `/v1/runs/${id}`],
        ["GET", `/v1/runs/${id}/events`],
        ["GET", `/v1/runs/${id}/events/stream`],
        ["POST", `/v1/runs/${id}/signal`, { action: "approve" }],
        ["POST", `/v1/runs/${id}/cancel`, {}]
      ] as Array<[string, string, unknown?]>) {
        const res = await request(h, method, path, {
          key: h.operatorKey,
          ...(json === undefined ? {} : { json })
        })
        expectError(res, 404, "RUN_NOT_FOUND")
      }
    }
  })

  it("answers a malformed key id with 404 KEY_NOT_FOUND", async () => {
    for (const id of ["nope", "key_", `key_${"a".repeat(65)}`, "key_abc%20def"])
      expectError(
        await request(h, "DELETE", `/v1/api-keys/${id}`, { key: h.operatorKey }),
        404,
        "KEY_NOT_FOUND"
      )
  })

  it("refuses after_seq and limit past what a store holds, or not integers, with 400", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    for (const query of [
      "after_seq=99999999999999999999",
      "after_seq=1e3",
      "after_seq=-1",
      "after_seq=0x10",
      "limit=1001",
      "limit=99999999999999999999"
    ])
      expectError(
        await request(h, "GET", `/v1/runs/${run.id}/events?${query}`, { key: h.operatorKey }),
        400,
        "VALIDATION_FAILED"
      )
    expectError(
      await request(h, "GET", "/v1/runs?limit=99999999999999999999", { key: h.operatorKey }),
      400,
      "VALIDATION_FAILED"
    )
    for (const lastEventId of ["99999999999999999999", "1\u00002", "abc"]) {
      const res = await request(h, "GET", `/v1/runs/${run.id}/events/stream`, {
        key: h.operatorKey,
        headers: { "last-event-id": lastEventId.replace("\u0000", "") === lastEventId ? lastEventId : "12x" }
      })
      expectError(res, 400, "VALIDATION_FAILED")
    }
  })

  it("never echoes an x-request-id that could break a log line", async () => {
    for (const sent of ["a b", "a\tb", "<script>", "x".repeat(129), "é"]) {
      const res = await request(h, "GET", "/v1/runs", {
        key: h.operatorKey,
        headers: { "x-request-id": sent }
      }).catch(() => null)
      if (res === null) continue // refused by the client itself: never reached us
      expect(res.headers.get("x-request-id")).not.toBe(sent)
      expect(res.headers.get("x-request-id")).toMatch(/^[A-Za-z0-9._:-]{1,128}$/)
    }
  })
})
