/** Key names and error mapping (pure): nothing the user sends shapes a Redis key, and errors keep their cause. */
import { describe, expect, it } from "vitest"
import { toStorageError } from "../src/internal/Errors.js"
import { keyLayout } from "../src/internal/Keys.js"

describe("key layout", () => {
  it("names an idempotency record by a SHA-256 of (customer, key): no raw key, no user-chosen hash tag", () => {
    const keys = keyLayout("p")
    const name = keys.idempotency("cust_a", "{slot}:x")
    expect(name).toMatch(/^p:idem:[0-9a-f]{64}$/)
    expect(name).not.toContain("{")
    // The pair is unambiguous: moving a character across the boundary changes the name.
    expect(keys.idempotency("cust_a", "bc")).not.toBe(keys.idempotency("cust_ab", "c"))
    expect(keys.idempotency("cust_a", "k")).toBe(keyLayout("p").idempotency("cust_a", "k"))
  })

  it("puts a run's tombstone in the run's slot", () => {
    const keys = keyLayout("p")
    expect(keys.voided("run_1")).toBe("p:void:{run_1}")
    expect(keys.run("run_1")).toBe("p:run:{run_1}")
  })
})

describe("storage errors", () => {
  it("keep what ioredis threw as a cause that is never serialized", () => {
    const cause = new Error("ECONNRESET 10.0.0.1:6379 password=hunter2")
    const error = toStorageError(cause)
    expect(error.message).toBe("The connection to Redis was lost.")
    expect((error as { cause?: unknown }).cause).toBe(cause)
    expect(JSON.stringify(error)).not.toContain("hunter2")
  })
})
