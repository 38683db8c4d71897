import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { isJsonValue, JsonObject, MAX_JSON_DEPTH, nestsDeeperThan } from "../src/Json.js"

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

  it("nestsDeeperThan measures any depth without recursion", () => {
    expect(nestsDeeperThan(nest(3), 3)).toBe(false)
    expect(nestsDeeperThan(nest(4), 3)).toBe(true)
    expect(nestsDeeperThan({ a: 1, b: [1, { c: "x" }] }, 3)).toBe(false)
    expect(nestsDeeperThan({ a: 1, b: [1, { c: [] }] }, 3)).toBe(true)
    expect(nestsDeeperThan("scalar", 0)).toBe(false)
    // Half a million levels, as 1 MiB of brackets parses to: measured, not a stack overflow.
    const deep = JSON.parse(`${"[".repeat(500_000)}${"]".repeat(500_000)}`)
    expect(nestsDeeperThan(deep, MAX_JSON_DEPTH)).toBe(true)
  })

  it("JsonObject accepts objects only", () => {
    const decode = Schema.decodeUnknownEither(JsonObject)
    expect(Either.isRight(decode({ a: 1 }))).toBe(true)
    for (const v of [[], null, "s", 1]) expect(Either.isLeft(decode(v))).toBe(true)
  })
})
