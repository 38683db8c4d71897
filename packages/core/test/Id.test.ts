import { describe, expect, it } from "vitest"
import { makeLeaseToken, makeRequestId, makeRunId, runIdTime } from "../src/Id.js"
import { RUN_ID_PATTERN } from "../src/Run.js"

describe("ids", () => {
  it("run ids are run_ + a ULID that carries its creation time and sorts by it", () => {
    const t = Date.UTC(2030, 0, 1)
    const ids = [makeRunId(t), makeRunId(t), makeRunId(t + 1), makeRunId(t + 1000)]
    for (const id of ids) expect(id).toMatch(RUN_ID_PATTERN)
    expect(runIdTime(ids[0]!)).toBe(t)
    expect(runIdTime(ids[3]!)).toBe(t + 1000)
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
  })

  it("lease tokens and request ids are unique", () => {
    const tokens = new Set(Array.from({ length: 100 }, makeLeaseToken))
    expect(tokens.size).toBe(100)
    const req = makeRequestId()
    expect(req).toMatch(/^req_[A-Za-z0-9_-]{16}$/)
    expect(makeRequestId()).not.toBe(req)
  })
})
