import { describe, expect, it } from "vitest"
import type { JsonValue } from "../src/Json.js"
import {
  DEFAULT_REDACTION_POLICY,
  NO_REDACTION,
  REDACTED,
  type RedactionPolicy,
  RedactionScope,
  redactJson
} from "../src/Redaction.js"

const redact = <A extends JsonValue>(value: A, policy: RedactionPolicy = DEFAULT_REDACTION_POLICY) =>
  redactJson(value, policy)

describe("redactJson with the default policy (SPEC §6)", () => {
  it.each([
    "secret",
    "client_secret",
    "password",
    "PASSWORD",
    "db_password",
    "token",
    "access_token",
    "refreshToken",
    "api_key",
    "apikey",
    "apiKey",
    "OPENAI_API_KEY",
    "authorization",
    "Authorization",
    "proxy-authorization"
  ])("replaces the whole value under the key %j", (key) => {
    const r = redact({ [key]: { anything: ["at", 1, "all"] }, keep: "me" })
    expect(r).toEqual({ value: { [key]: REDACTED, keep: "me" }, redacted: true })
  })

  it.each(["username", "email", "key", "count", "passage", "keyword"])("leaves the key %j alone", (key) => {
    expect(redact({ [key]: "value" })).toEqual({ value: { [key]: "value" }, redacted: false })
  })

  it("removes bearer-looking credentials inside any string", () => {
    expect(redact("Authorization: Bearer abcDEF123._~+/-xyz== and more")).toEqual({
      value: `Authorization: ${REDACTED} and more`,
      redacted: true
    })
    expect(redact("bearer abcdefgh12")).toEqual({ value: REDACTED, redacted: true })
    // too short to be a credential
    expect(redact("Bearer abc")).toEqual({ value: "Bearer abc", redacted: false })
    expect(redact("a bearer of bad news")).toEqual({ value: "a bearer of bad news", redacted: false })
  })

  it("removes Baton API keys key_<id>:<secret> inside any string", () => {
    const key = "key_AbCdEf0123456789AbCdEf01:abcdefghijklmnopqrstuvwxyz_ABC-0123456789abcd"
    expect(redact(`use ${key} then ${key}.`)).toEqual({
      value: `use ${REDACTED} then ${REDACTED}.`,
      redacted: true
    })
    // a key id alone is public
    expect(redact("key_AbCdEf0123456789AbCdEf01")).toEqual({
      value: "key_AbCdEf0123456789AbCdEf01",
      redacted: false
    })
  })

  it("walks nested objects and arrays", () => {
    const input = {
      user: { name: "ada", credentials: { password: "p", hint: "Bearer abcdefghijkl" } },
      calls: [
        { headers: { Authorization: "Basic x" }, body: ["ok", "key_abcdefgh12:abcdefghijklmnop"] },
        [[{ token: 1 }]]
      ],
      n: 1,
      b: false,
      nothing: null
    }
    const before = structuredClone(input)
    expect(redact(input)).toEqual({
      value: {
        user: { name: "ada", credentials: { password: REDACTED, hint: REDACTED } },
        calls: [{ headers: { Authorization: REDACTED }, body: ["ok", REDACTED] }, [[{ token: REDACTED }]]],
        n: 1,
        b: false,
        nothing: null
      },
      redacted: true
    })
    // the input is left as it was
    expect(input).toEqual(before)
  })

  it("reports redacted: false and returns an equal value when nothing matches", () => {
    const input = { a: [1, "two", { three: null }], b: { c: true } }
    expect(redact(input)).toEqual({ value: input, redacted: false })
    for (const scalar of [null, 0, -1.5, true, "", "plain"] as const)
      expect(redact(scalar)).toEqual({ value: scalar, redacted: false })
  })

  it("keeps a key named __proto__ as data, never as a prototype", () => {
    const input = JSON.parse('{"__proto__": {"x": 1}, "a": {"__proto__": {"password": "p"}}}') as JsonValue
    const r = redact(input)
    expect(r.redacted).toBe(true)
    expect(JSON.stringify(r.value)).toBe(`{"__proto__":{"x":1},"a":{"__proto__":{"password":"${REDACTED}"}}}`)
    expect(Object.getPrototypeOf(r.value)).toBe(Object.prototype)
    expect(Object.keys(r.value as object)).toEqual(["__proto__", "a"])
  })

  it("gives the same answer on every call (global patterns carry no state between calls)", () => {
    const s = "x Bearer abcdefghijklmnop y"
    const first = redact(s)
    for (let i = 0; i < 5; i++) expect(redact(s)).toEqual(first)
    expect(first.redacted).toBe(true)
  })
})

describe("other policies", () => {
  it("NO_REDACTION removes nothing", () => {
    const input = { password: "p", note: "Bearer abcdefghijklmnop" }
    expect(redact(input, NO_REDACTION)).toEqual({ value: input, redacted: false })
  })

  it("a custom policy uses its own patterns and replacement", () => {
    const policy: RedactionPolicy = {
      keyPattern: /^ssn$/,
      valuePatterns: [/\d{3}-\d{2}-\d{4}/g],
      replacement: "***"
    }
    expect(redact({ ssn: "1", note: "id 123-45-6789", password: "kept" }, policy)).toEqual({
      value: { ssn: "***", note: "id ***", password: "kept" },
      redacted: true
    })
  })
})

describe("RedactionScope", () => {
  it("reports one flag for several parts of a payload", () => {
    const scope = new RedactionScope(DEFAULT_REDACTION_POLICY)
    expect(scope.json({ a: 1 })).toEqual({ a: 1 })
    expect(scope.string("clean")).toBe("clean")
    expect(scope.redacted).toBe(false)
    expect(scope.string("Bearer abcdefghijklmnop")).toBe(REDACTED)
    expect(scope.json({ b: 2 })).toEqual({ b: 2 })
    expect(scope.redacted).toBe(true)
  })
})
