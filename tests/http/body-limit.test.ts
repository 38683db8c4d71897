/**
 * SPEC §4 413 BODY_TOO_LARGE (default limit 1 MiB), on a server of its own.
 * A refused body is never read; what that does to the connection is checked
 * in body-limit-connection.test.ts, so here the 413 comes last.
 */
import { describe, expect, it } from "vitest"
import { expectError, newIdempotencyKey, request } from "./support/Client.js"
import { type Harness, useHarness } from "./support/Harness.js"

const h = useHarness()

const MIB = 1024 * 1024

const postRaw = (harness: Harness, raw: string) =>
  request(harness, "POST", "/v1/runs", {
    key: harness.operatorKey,
    raw,
    headers: { "content-type": "application/json", "idempotency-key": newIdempotencyKey() }
  })

describe("body limit", () => {
  it("accepts a body of up to 1 MiB", async () => {
    const under = JSON.stringify({ input: "y".repeat(MIB - 100), handler: "parked" })
    expect(under.length).toBeLessThanOrEqual(MIB)
    const fits = await postRaw(h, under)
    expect(fits.status, fits.text.slice(0, 200)).toBe(201)
  })

  it("refuses a body over 1 MiB with 413 BODY_TOO_LARGE", async () => {
    const over = JSON.stringify({ input: "x".repeat(MIB) })
    expect(over.length).toBeGreaterThan(MIB)
    expectError(await postRaw(h, over), 413, "BODY_TOO_LARGE")
  })
})
