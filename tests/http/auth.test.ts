/**
 * SPEC §6 and the 401/403/404 rows of §4 over a real server: who may call,
 * with which scopes, and that customers never see each other's runs.
 */
import { describe, expect, it } from "vitest"
import {
  createRun,
  eventually,
  expectError,
  getRun,
  issueKey,
  newCustomer,
  newIdempotencyKey,
  request
} from "./support/Client.js"
import { randomKeyString, useHarness } from "./support/Harness.js"

const h = useHarness()

const MISSING_RUN = "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"

describe("authentication", () => {
  it("answers 401 AUTH_MISSING_HEADER without an Authorization header, on every kind of route", async () => {
    const run = await createRun(h, h.operatorKey, { input: 1, handler: "parked" })
    const routes: Array<[string, string, unknown?]> = [
      ["GET", "/v1/runs"],
      ["POST", "/v1/runs", { input: 1 }],
      ["GET", `/v1/runs/${run.id}`],
      ["GET", `/v1/runs/${run.id}/events`],
      ["GET", `/v1/runs/${run.id}/events/stream`],
      ["POST", `/v1/runs/${run.id}/signal`, { action: "approve" }],
      ["POST", `/v1/runs/${run.id}/cancel`, {}],
      ["GET", "/v1/api-keys"],
      ["POST", "/v1/api-keys", { scopes: ["runs:read"] }],
      ["DELETE", "/v1/api-keys/key_abcdefghijklmnopqrstuvwx"]
    ]
    for (const [method, path, json] of routes) {
      const res = await request(h, method, path, {
        ...(json === undefined ? {} : { json }),
        headers: { "idempotency-key": newIdempotencyKey() }
      })
      expectError(res, 401, "AUTH_MISSING_HEADER")
    }
    // An empty header is as good as none.
    expectError(
      await request(h, "GET", "/v1/runs", { headers: { authorization: "" } }),
      401,
      "AUTH_MISSING_HEADER"
    )
    // Nothing was done on the caller's behalf.
    expect((await getRun(h, h.operatorKey, run.id)).status).toBe("queued")
  })

  it("answers every bad key with the same 401 AUTH_KEY_INVALID body: malformed, unknown, wrong secret, revoked, expired", async () => {
    const [operatorKeyId] = h.operatorKey.split(":")
    const revoked = await issueKey(h, h.operatorKey, { scopes: ["runs:read"] })
    expect((await request(h, "DELETE", `/v1/api-keys/${revoked.keyId}`, { key: h.operatorKey })).status).toBe(
      204
    )
    const expiring = await issueKey(h, h.operatorKey, {
      scopes: ["runs:read"],
      expires_at: new Date(Date.now() + 1000).toISOString()
    })
    // Valid until it expires…
    expect((await request(h, "GET", "/v1/runs", { key: expiring.key })).status).toBe(200)
    // …then refused.
    await eventually(
      async () => (await request(h, "GET", "/v1/runs", { key: expiring.key })).status === 401,
      "the key to expire"
    )

    const authorizations = [
      "Basic dXNlcjpwYXNz", // another scheme
      "Bearer", // no credentials
      "Bearer not-a-key", // no colon
      "Bearer key_short:abc", // malformed id and secret
      `Bearer ${operatorKeyId}`, // an id without a secret
      `Bearer ${operatorKeyId}:`, // an empty secret
      `Bearer ${h.operatorKey} extra`, // trailing junk
      `Bearer ${randomKeyString()}`, // well formed, unknown
      `Bearer ${operatorKeyId}:${randomKeyString().split(":")[1]}`, // known id, wrong secret
      `Bearer ${revoked.key}`, // revoked
      `Bearer ${expiring.key}` // expired
    ]
    const bodies: unknown[] = []
    for (const authorization of authorizations) {
      const res = await request(h, "GET", "/v1/runs", { headers: { authorization } })
      expectError(res, 401, "AUTH_KEY_INVALID")
      expect(Object.keys(res.body).sort(), authorization).toEqual(["error", "reason_code", "request_id"])
      const { request_id: _, ...rest } = res.body
      bodies.push(rest)
    }
    // One indistinguishable answer: nothing tells an attacker which part was wrong.
    for (const body of bodies) expect(body).toEqual(bodies[0])
  })

  it("accepts the scheme name in any case", async () => {
    const res = await request(h, "GET", "/v1/runs", { headers: { authorization: `bearer ${h.operatorKey}` } })
    expect(res.status).toBe(200)
  })
})

describe("scopes", () => {
  it("refuses POST /runs with 403 AUTH_SCOPE_DENIED to a key without runs:write", async () => {
    const { key } = await newCustomer(h, ["runs:read", "runs:signal"])
    const res = await request(h, "POST", "/v1/runs", {
      key,
      json: { input: 1 },
      headers: { "idempotency-key": newIdempotencyKey() }
    })
    expectError(res, 403, "AUTH_SCOPE_DENIED")
    // Nothing was created.
    expect((await request(h, "GET", "/v1/runs", { key })).body.data).toEqual([])
  })

  it("checks runs:read, runs:write and runs:signal on reads, cancels and signals", async () => {
    const owner = await newCustomer(h)
    const run = await createRun(h, owner.key, { input: 1, handler: "parked" })
    // Keys of the same customer with one scope each.
    const readOnly = await issueKey(h, owner.key, { scopes: ["runs:read"] })
    const writeOnly = await issueKey(h, owner.key, { scopes: ["runs:write"] })
    const signalOnly = await issueKey(h, owner.key, { scopes: ["runs:signal"] })

    for (const path of ["/v1/runs", `/v1/runs/${run.id}`, `/v1/runs/${run.id}/events`]) {
      expect((await request(h, "GET", path, { key: readOnly.key })).status).toBe(200)
      expectError(await request(h, "GET", path, { key: writeOnly.key }), 403, "AUTH_SCOPE_DENIED")
    }
    expectError(
      await request(h, "GET", `/v1/runs/${run.id}/events/stream`, { key: writeOnly.key }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    expectError(
      await request(h, "POST", `/v1/runs/${run.id}/signal`, {
        key: readOnly.key,
        json: { action: "approve" }
      }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    expectError(
      await request(h, "POST", `/v1/runs/${run.id}/cancel`, { key: signalOnly.key, json: {} }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    expectError(
      await request(h, "POST", `/v1/runs/${run.id}/cancel`, { key: readOnly.key, json: {} }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    // runs:signal passes the scope check (the run is queued, so the state refuses it).
    expectError(
      await request(h, "POST", `/v1/runs/${run.id}/signal`, {
        key: signalOnly.key,
        json: { action: "approve" }
      }),
      409,
      "RUN_NOT_AWAITING_INPUT"
    )
    expect((await getRun(h, owner.key, run.id)).status).toBe("queued")
    // runs:write creates.
    const created = await request(h, "POST", "/v1/runs", {
      key: writeOnly.key,
      json: { input: 2, handler: "parked" },
      headers: { "idempotency-key": newIdempotencyKey() }
    })
    expect(created.status).toBe(201)
  })

  it("needs keys:admin for every /api-keys route", async () => {
    const owner = await newCustomer(h)
    const runsOnly = await issueKey(h, owner.key, { scopes: ["runs:read", "runs:write", "runs:signal"] })
    expectError(
      await request(h, "POST", "/v1/api-keys", { key: runsOnly.key, json: { scopes: ["runs:read"] } }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    expectError(await request(h, "GET", "/v1/api-keys", { key: runsOnly.key }), 403, "AUTH_SCOPE_DENIED")
    expectError(
      await request(h, "DELETE", `/v1/api-keys/${owner.keyId}`, { key: runsOnly.key }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    // The admin key was not revoked by that attempt.
    expect((await request(h, "GET", "/v1/api-keys", { key: owner.key })).status).toBe(200)
  })

  it("never lets a key mint a scope it lacks, nor a key for another customer unless it is the operator", async () => {
    const owner = await newCustomer(h)
    const limitedAdmin = await issueKey(h, owner.key, { scopes: ["keys:admin", "runs:read"] })
    expectError(
      await request(h, "POST", "/v1/api-keys", {
        key: limitedAdmin.key,
        json: { scopes: ["runs:read", "runs:write"] }
      }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    expectError(
      await request(h, "POST", "/v1/api-keys", { key: limitedAdmin.key, json: { scopes: ["runs:signal"] } }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    // Its own scopes (or fewer) are fine.
    const minted = await request(h, "POST", "/v1/api-keys", {
      key: limitedAdmin.key,
      json: { scopes: ["runs:read"] }
    })
    expect(minted.status).toBe(201)
    expect(minted.body.customer_id).toBe(owner.customerId)
    // A customer's admin cannot issue keys for another customer.
    expectError(
      await request(h, "POST", "/v1/api-keys", {
        key: owner.key,
        json: { scopes: ["runs:read"], customer_id: "someone-else" }
      }),
      403,
      "AUTH_SCOPE_DENIED"
    )
  })
})

describe("tenancy", () => {
  it("hides a customer's run from another customer: 404 RUN_NOT_FOUND everywhere, an empty list", async () => {
    const a = await newCustomer(h)
    const b = await newCustomer(h)
    const run = await createRun(h, a.key, { input: { q: "mine" }, handler: "parked" })
    const missing = await request(h, "GET", `/v1/runs/${MISSING_RUN}`, { key: b.key })
    expectError(missing, 404, "RUN_NOT_FOUND")
    const { request_id: _, ...missingBody } = missing.body

    const attempts: Array<[string, string, unknown?]> = [
      ["GET", `/v1/runs/${run.id}`],
      ["GET", `/v1/runs/${run.id}/events`],
      ["GET", `/v1/runs/${run.id}/events/stream`],
      ["POST", `/v1/runs/${run.id}/signal`, { action: "approve" }],
      ["POST", `/v1/runs/${run.id}/cancel`, { reason: "not yours" }]
    ]
    for (const [method, path, json] of attempts) {
      const res = await request(h, method, path, { key: b.key, ...(json === undefined ? {} : { json }) })
      expectError(res, 404, "RUN_NOT_FOUND")
      // Indistinguishable from a run that does not exist.
      const { request_id: __, ...body } = res.body
      expect(body, `${method} ${path}`).toEqual(missingBody)
    }
    const list = await request(h, "GET", "/v1/runs", { key: b.key })
    expect(list.status).toBe(200)
    expect(list.body.data).toEqual([])
    expect(list.body.has_more).toBe(false)
    // The cancel attempt did nothing; the owner still sees the run.
    const mine = await getRun(h, a.key, run.id)
    expect(mine.status).toBe("queued")
    expect(mine.last_seq).toBe(1)
    expect(
      (await request(h, "GET", "/v1/runs", { key: a.key })).body.data.map((r: { id: string }) => r.id)
    ).toEqual([run.id])
  })

  it("scopes idempotency keys by customer", async () => {
    const a = await newCustomer(h)
    const b = await newCustomer(h)
    const idem = newIdempotencyKey()
    const body = { input: { same: true }, handler: "parked" }
    const first = await request(h, "POST", "/v1/runs", {
      key: a.key,
      json: body,
      headers: { "idempotency-key": idem }
    })
    const second = await request(h, "POST", "/v1/runs", {
      key: b.key,
      json: body,
      headers: { "idempotency-key": idem }
    })
    expect([first.status, second.status]).toEqual([201, 201])
    expect(second.body.id).not.toBe(first.body.id)
  })

  it("keeps keys per customer: another customer's key cannot be listed or revoked", async () => {
    const a = await newCustomer(h)
    const b = await newCustomer(h)
    const listed = await request(h, "GET", "/v1/api-keys", { key: b.key })
    expect(listed.body.data.map((k: { key_id: string }) => k.key_id)).toEqual([b.keyId])
    const res = await request(h, "DELETE", `/v1/api-keys/${a.keyId}`, { key: b.key })
    expect(res.status).toBe(404)
    expect((await request(h, "GET", "/v1/runs", { key: a.key })).status).toBe(200)
  })
})
