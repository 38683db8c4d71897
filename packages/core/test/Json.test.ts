import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { isJsonValue, JsonObject, MAX_JSON_DEPTH } from "../src/Json.js"

const nest = (depth: number): unknown => {
  let v: unknown = 1
  for (let i = 0; i < depth; i++) v = [v]
  return v
}

describe("isJsonValue", () => {
  it("accepts what survives a JSON round trip", () => {
    for (const v of [null, true, 0, -1.5, "s", [], {}, { a: [1, { b: null }] }, Object.create(null)])
      expect(isJsonValue(v), JSON.stringify(v)).toBe(true)
  })

  it("refuses non-finite numbers, undefined, functions, class instances and symbols", () => {
    for (const v of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      undefined,
      () => 1,
      new Date(),
      new Map(),
      Symbol("s"),
      1n
    ])
      expect(isJsonValue(v), String(v)).toBe(false)
    expect(isJsonValue({ a: undefined })).toBe(false)
    expect(isJsonValue([1, Number.NaN])).toBe(false)
  })

  it("refuses nesting deeper than MAX_JSON_DEPTH", () => {
    expect(isJsonValue(nest(MAX_JSON_DEPTH))).toBe(true)
    expect(isJsonValue(nest(MAX_JSON_DEPTH + 1))).toBe(false)
    expect(isJsonValue(nest(100_000))).toBe(false)
  })

  it("JsonObject accepts objects only", () => {
    const decode = Schema.decodeUnknownEither(JsonObject)
    expect(Either.isRight(decode({ a: 1 }))).toBe(true)
    for (const v of [[], null, "s", 1]) expect(Either.isLeft(decode(v))).toBe(true)
  })
})
