/**
 * After a 413 the server has not read the body. It must then either drain it
 * and keep the connection, or say `Connection: close`; it must not answer
 * `keep-alive` and drop the connection under the client's next request.
 */
import { expect, it } from "vitest"
import { expectError, newIdempotencyKey, request } from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const postRaw = (raw: string) =>
  request(h, "POST", "/v1/runs", {
    key: h.operatorKey,
    raw,
    headers: { "content-type": "application/json", "idempotency-key": newIdempotencyKey() }
  })

it("keeps the client's next request working after a 413", async () => {
  const over = JSON.stringify({ input: "x".repeat(1024 * 1024) })
  for (let i = 0; i < 3; i++) {
    expectError(await postRaw(over), 413, "BODY_TOO_LARGE")
    // Sent at once, on whatever connection the client's pool offers.
    const next = await postRaw(JSON.stringify({ input: i, handler: "parked" }))
    expect(next.status).toBe(201)
  }
})
