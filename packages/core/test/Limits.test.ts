import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { DEFAULT_LIMITS, Limits, LimitsInput, limitReasonCode, resolveLimits } from "../src/Limits.js"

describe("limits", () => {
  it("defaults match SPEC §1", () => {
    expect(DEFAULT_LIMITS).toEqual({
      max_steps: 100,
      max_duration_ms: 3_600_000,
      max_step_attempts: 3,
      input_timeout_ms: null,
      max_tokens: null,
      max_cost_usd: null
    })
    expect(Schema.is(Limits)(DEFAULT_LIMITS)).toBe(true)
  })

  it("fills a client's partial limits from the defaults", () => {
    expect(resolveLimits(undefined)).toEqual(DEFAULT_LIMITS)
    expect(resolveLimits({ max_steps: 5, max_tokens: 1000 })).toEqual({
      ...DEFAULT_LIMITS,
      max_steps: 5,
      max_tokens: 1000
    })
    expect(resolveLimits({}, { ...DEFAULT_LIMITS, max_steps: 7 }).max_steps).toBe(7)
  })

  it("refuses limits out of range", () => {
    const decode = Schema.decodeUnknownEither(LimitsInput)
    for (const bad of [
      { max_steps: 0 },
      { max_steps: 1.5 },
      { max_step_attempts: 101 },
      { max_tokens: -1 },
      { max_cost_usd: Number.POSITIVE_INFINITY },
      { input_timeout_ms: 0 },
      { max_duration_ms: undefined }
    ])
      expect(Either.isLeft(decode(bad)), JSON.stringify(bad)).toBe(true)
    expect(Either.isRight(decode({ input_timeout_ms: null, max_cost_usd: 0 }))).toBe(true)
  })

  it("names the reason code of every limit", () => {
    expect(limitReasonCode("max_steps")).toBe("LIMIT_MAX_STEPS")
    expect(limitReasonCode("max_duration_ms")).toBe("LIMIT_MAX_DURATION")
    expect(limitReasonCode("input_timeout")).toBe("LIMIT_INPUT_TIMEOUT")
    expect(limitReasonCode("max_tokens")).toBe("LIMIT_BUDGET")
    expect(limitReasonCode("max_cost_usd")).toBe("LIMIT_BUDGET")
  })
})
