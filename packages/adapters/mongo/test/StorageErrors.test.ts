/** Driver failures become StorageErrors whose message names no host, value or password. */
import { MongoNetworkError, MongoServerError, MongoServerSelectionError } from "mongodb"
import { describe, expect, it } from "vitest"
import { toStorageError } from "../src/StorageErrors.js"

const SECRET_BEARING = "mongodb://baton:hunter2@db.internal:27017 { _id: 'run_1', input: 'card 4111' }"

describe("toStorageError", () => {
  it("keeps the code and drops the driver's message", () => {
    const cases = [
      new MongoServerError({ ok: 0, code: 11000, errmsg: `E11000 dup key ${SECRET_BEARING}` }),
      new MongoServerError({ ok: 0, code: 112, errmsg: `WriteConflict ${SECRET_BEARING}` }),
      new MongoNetworkError(`connection to ${SECRET_BEARING} closed`),
      new MongoServerSelectionError(`Server selection timed out ${SECRET_BEARING}`, {
        type: "Unknown",
        servers: new Map(),
        stale: false,
        compatible: true,
        heartbeatFrequencyMS: 10_000,
        localThresholdMS: 15,
        setName: null,
        maxElectionId: null,
        maxSetVersion: null,
        commonWireVersion: 0,
        logicalSessionTimeoutMinutes: null
      } as never),
      new Error(SECRET_BEARING),
      SECRET_BEARING
    ]
    const messages = cases.map((c) => toStorageError(c).message)
    expect(messages).toEqual([
      "The MongoDB store refused an operation (code 11000).",
      "The MongoDB store is unavailable (code 112).",
      "The connection to the MongoDB store failed or was lost.",
      "The MongoDB store could not be reached (no server answered in time).",
      "The MongoDB store failed unexpectedly.",
      "The MongoDB store failed unexpectedly."
    ])
    for (const m of messages) expect(m).not.toMatch(/hunter2|db\.internal|4111|run_1/)
    expect(toStorageError(cases[0]).reason_code).toBe("STORAGE_UNAVAILABLE")
  })
})
