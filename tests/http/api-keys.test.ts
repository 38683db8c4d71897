/**
 * SPEC §4 `/api-keys` and §6: a key is shown once, never listed with its
 * secret or hash, and revoked keys fail at once.
 */
import { describe, expect, it } from "vitest"
import { expectError, newCustomer, request } from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/

describe("/v1/api-keys", () => {
  it("issues a key: 201 with key_id, key (key_id:secret, shown once), scopes, customer_id, created_at", async () => {
    const owner = await newCustomer(h)
    const res = await request(h, "POST", "/v1/api-keys", {
      key: owner.key,
      json: { scopes: ["runs:read", "runs:write"], name: "ci" }
    })
    expect(res.status).toBe(201)
    const issued = res.body
    expect(issued).toMatchObject({
      scopes: ["runs:read", "runs:write"],
      customer_id: owner.customerId,
      name: "ci"
    })
    expect(issued.key_id).toMatch(/^key_[A-Za-z0-9]+$/)
    expect(issued.created_at).toMatch(ISO)
    expect(issued.key.startsWith(`${issued.key_id}:`)).toBe(true)
    const secret = issued.key.slice(issued.key_id.length + 1)
    expect(secret.length).toBeGreaterThanOrEqual(32)
    expect(issued.secret_hash).toBeUndefined()
    // The key works, with its scopes.
    expect((await request(h, "GET", "/v1/runs", { key: issued.key })).status).toBe(200)
    expectError(await request(h, "GET", "/v1/api-keys", { key: issued.key }), 403, "AUTH_SCOPE_DENIED")

    // Listed without any secret, hash or key.
    const listed = await request(h, "GET", "/v1/api-keys", { key: owner.key })
    expect(listed.status).toBe(200)
    expect(listed.text).not.toContain(secret)
    const mine = listed.body.data.find((k: { key_id: string }) => k.key_id === issued.key_id)
    expect(mine).toMatchObject({
      key_id: issued.key_id,
      customer_id: owner.customerId,
      scopes: ["runs:read", "runs:write"],
      revoked_at: null
    })
    for (const k of listed.body.data) {
      expect(k.key).toBeUndefined()
      expect(k.secret).toBeUndefined()
      expect(k.secret_hash).toBeUndefined()
      expect(JSON.stringify(k)).not.toMatch(/[0-9a-f]{64}/)
    }
    // The operator's own key never shows up in another customer's list.
    const [operatorKeyId] = h.operatorKey.split(":")
    expect(listed.text).not.toContain(operatorKeyId)
  })

  it("revokes a key: 204 with no body, and that key is refused with 401 at once", async () => {
    const owner = await newCustomer(h)
    const issued = (
      await request(h, "POST", "/v1/api-keys", { key: owner.key, json: { scopes: ["runs:read"] } })
    ).body
    expect((await request(h, "GET", "/v1/runs", { key: issued.key })).status).toBe(200)
    const res = await request(h, "DELETE", `/v1/api-keys/${issued.key_id}`, { key: owner.key })
    expect(res.status).toBe(204)
    expect(res.text).toBe("")
    expectError(await request(h, "GET", "/v1/runs", { key: issued.key }), 401, "AUTH_KEY_INVALID")
    const listed = await request(h, "GET", "/v1/api-keys", { key: owner.key })
    const revoked = listed.body.data.find((k: { key_id: string }) => k.key_id === issued.key_id)
    // Either shown as revoked or no longer listed.
    if (revoked !== undefined) expect(revoked.revoked_at).toMatch(ISO)
  })

  it("lets a key revoke itself; it fails right after", async () => {
    const owner = await newCustomer(h)
    expect((await request(h, "DELETE", `/v1/api-keys/${owner.keyId}`, { key: owner.key })).status).toBe(204)
    expectError(await request(h, "GET", "/v1/api-keys", { key: owner.key }), 401, "AUTH_KEY_INVALID")
  })

  it("answers 404 for an unknown or malformed key id", async () => {
    for (const id of ["key_abcdefghijklmnopqrstuvwx", "nope"]) {
      const res = await request(h, "DELETE", `/v1/api-keys/${id}`, { key: h.operatorKey })
      expect(res.status).toBe(404)
      expect(typeof res.body.reason_code).toBe("string")
      expect(typeof res.body.error).toBe("string")
    }
  })

  it("refuses an ill-formed request with 400 VALIDATION_FAILED and details", async () => {
    const bodies: unknown[] = [
      {},
      { scopes: [] },
      { scopes: ["runs:everything"] },
      { scopes: "runs:read" },
      { scopes: ["runs:read"], expires_at: "tomorrow" },
      { scopes: ["runs:read"], expires_at: "2001-01-01T00:00:00.000Z" },
      { scopes: ["runs:read"], customer_id: "has space" }
    ]
    for (const body of bodies) {
      const res = await request(h, "POST", "/v1/api-keys", { key: h.operatorKey, json: body })
      expectError(res, 400, "VALIDATION_FAILED")
      expect(Array.isArray(res.body.details), JSON.stringify(body)).toBe(true)
    }
    const malformed = await request(h, "POST", "/v1/api-keys", {
      key: h.operatorKey,
      raw: "{",
      headers: { "content-type": "application/json" }
    })
    expectError(malformed, 400, "MALFORMED_JSON")
  })

  it("lets the operator issue a key for another customer, which sees only its own runs", async () => {
    const res = await request(h, "POST", "/v1/api-keys", {
      key: h.operatorKey,
      json: { scopes: ["runs:read"], customer_id: "acme-widgets" }
    })
    expect(res.status).toBe(201)
    expect(res.body.customer_id).toBe("acme-widgets")
    const runs = await request(h, "GET", "/v1/runs", { key: res.body.key })
    expect(runs.body.data).toEqual([])
  })
})
