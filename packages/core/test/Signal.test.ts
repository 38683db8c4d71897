import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { checkInputSchema, SignalRequest, validateSignalInput } from "../src/Signal.js"

const titleSchema = {
  type: "object",
  required: ["title"],
  properties: {
    title: { type: "string", minLength: 1 },
    tags: { type: "array", items: { type: "string" } },
    meta: { type: "object", properties: { priority: { type: "integer" } } }
  },
  additionalProperties: false
}

describe("validateSignalInput", () => {
  it("accepts input that conforms", () => {
    expect(validateSignalInput(titleSchema, { title: "Q4", tags: ["a"], meta: { priority: 1 } })).toEqual([])
    expect(validateSignalInput({ type: "string" }, "x")).toEqual([])
    expect(validateSignalInput({}, { anything: [1, 2] })).toEqual([])
  })

  it("lists every problem with a dotted path under input", () => {
    const details = validateSignalInput(titleSchema, { tags: ["a", 2], meta: { priority: 1.5 }, extra: true })
    expect(details).toEqual(
      expect.arrayContaining([
        { path: "input", message: "must have required property 'title'" },
        { path: "input", message: "must NOT have additional properties" },
        { path: "input.tags.1", message: "must be string" },
        { path: "input.meta.priority", message: "must be integer" }
      ])
    )
    expect(details).toHaveLength(4)
  })

  it("treats missing input as not conforming to an object schema", () => {
    expect(validateSignalInput(titleSchema, undefined)).toEqual([
      { path: "input", message: "must be object" }
    ])
  })

  it("reports a schema that is not a usable JSON Schema instead of throwing", () => {
    const bad = [
      { type: "nonsense" },
      { $ref: "#/definitions/missing" },
      { properties: { a: { minLength: -1 } } }
    ]
    for (const schema of bad) {
      const details = validateSignalInput(schema, {})
      expect(details, JSON.stringify(schema)).toHaveLength(1)
      expect(details[0]!.path).toBe("input_schema")
      expect(details[0]!.message.length).toBeGreaterThan(0)
      expect(checkInputSchema(schema)).toBe(details[0]!.message)
    }
    expect(checkInputSchema(titleSchema)).toBeNull()
  })

  it("lets two waits use one $id for different schemas", () => {
    const a = { $id: "https://example.com/answer", type: "string" }
    const b = { $id: "https://example.com/answer", type: "number" }
    expect(validateSignalInput(a, "x")).toEqual([])
    expect(validateSignalInput(b, 1)).toEqual([])
    expect(validateSignalInput(b, "x")).toEqual([{ path: "input", message: "must be number" }])
    expect(validateSignalInput(a, 1)).toEqual([{ path: "input", message: "must be string" }])
  })

  it("keeps validating correctly past its cache size", () => {
    for (let i = 0; i < 1_100; i++) {
      const schema = { type: "object", required: [`f${i}`] }
      expect(validateSignalInput(schema, { [`f${i}`]: 1 })).toEqual([])
      expect(validateSignalInput(schema, {})).toHaveLength(1)
    }
    expect(validateSignalInput(titleSchema, { title: "again" })).toEqual([])
    expect(validateSignalInput({ type: "nonsense" }, 1)[0]!.path).toBe("input_schema")
  })
})

describe("SignalRequest", () => {
  const decode = Schema.decodeUnknownEither(SignalRequest, { onExcessProperty: "error" })

  it("accepts the three actions with optional input and comment", () => {
    for (const body of [
      { action: "approve" },
      { action: "reject", comment: "no" },
      { action: "submit_input", input: { title: "x" } }
    ])
      expect(Either.getOrThrow(decode(body))).toEqual(body)
  })

  it("refuses another action, a long comment, non-JSON input or extra fields", () => {
    for (const body of [
      { action: "maybe" },
      {},
      { action: "approve", comment: "x".repeat(10_001) },
      { action: "approve", input: Number.NaN },
      { action: "approve", extra: 1 }
    ])
      expect(Either.isLeft(decode(body)), JSON.stringify(body)).toBe(true)
  })
})
