/**
 * Hostile input to the engine's programs: malformed ids are refused before any
 * storage call, and input nested past the JSON depth is a validation error,
 * never a defect (the schema's error formatting recurses).
 */
import { type MemoryStore, makeMemoryStore, memoryStorage } from "@baton/adapter-memory"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { ALL_SCOPES, type Principal } from "../src/ApiKey.js"
import type { EngineServices } from "../src/Container.js"
import * as Engine from "../src/Engine.js"
import { EngineConfig } from "../src/EngineConfig.js"
import { MAX_DETAIL_CHARS, MAX_DETAILS } from "../src/internal/validate.js"
import { KeyCache } from "../src/KeyCache.js"
import { RunEventReaders } from "../src/RunEventReaders.js"

const OPERATOR: Principal = { customerId: "default", keyId: null, scopes: ALL_SCOPES }

/** Every call to a store method, by name. */
const spied = (inner: MemoryStore): { store: MemoryStore; calls: string[] } => {
  const calls: string[] = []
  const wrap = <T extends object>(name: string, target: T): T =>
    new Proxy(target, {
      get: (t, prop, receiver) => {
        const value = Reflect.get(t, prop, receiver)
        return typeof value === "function"
          ? (...args: unknown[]) => {
              calls.push(`${name}.${String(prop)}`)
              return value.apply(t, args)
            }
          : value
      }
    })
  return {
    calls,
    store: {
      ...inner,
      runStore: wrap("runStore", inner.runStore),
      keyStore: wrap("keyStore", inner.keyStore),
      eventFeed: wrap("eventFeed", inner.eventFeed)
    }
  }
}

const MALFORMED = ["", "nope", "run_", `run_${"A".repeat(27)}`, "run_01ARZ3NDEKTSV4RRFFQ69G5FA\n", "key_x"]

describe("malformed ids", () => {
  it.effect("are RUN_NOT_FOUND / KEY_NOT_FOUND without a single storage call", () => {
    const { store, calls } = spied(makeMemoryStore())
    const layer = RunEventReaders.layer.pipe(
      Layer.provideMerge(Layer.mergeAll(memoryStorage(store).layer, EngineConfig.layer(), KeyCache.layer()))
    )
    return Effect.gen(function* () {
      for (const id of MALFORMED) {
        const programs: ReadonlyArray<
          Effect.Effect<unknown, { readonly reason_code: string }, EngineServices>
        > = [
          Engine.getRun(OPERATOR, id),
          Engine.readEvents(OPERATOR, id, {}),
          Engine.subscribe(OPERATOR, id, 0),
          Engine.signalRun(OPERATOR, id, { action: "approve" }),
          Engine.cancelRun(OPERATOR, id, {})
        ]
        for (const program of programs)
          expect(yield* Effect.flip(program), JSON.stringify(id)).toMatchObject({
            reason_code: "RUN_NOT_FOUND"
          })
        expect(yield* Effect.flip(Engine.revokeKey(OPERATOR, id))).toMatchObject({
          reason_code: "KEY_NOT_FOUND"
        })
        expect(yield* Effect.flip(Engine.verifyKey(`${id}:${"A".repeat(43)}`))).toMatchObject({
          reason_code: "AUTH_KEY_INVALID"
        })
      }
      expect(calls).toEqual([])
    }).pipe(Effect.provide(layer))
  })
})

describe("deep input", () => {
  const deep = JSON.parse(`${"[".repeat(200_000)}${"]".repeat(200_000)}`)
  const layer = Layer.mergeAll(memoryStorage().layer, EngineConfig.layer(), KeyCache.layer())

  it.effect("is a VALIDATION_FAILED error in every field, never a defect", () =>
    Effect.gen(function* () {
      const failures = [
        yield* Effect.flip(Engine.createRun(OPERATOR, { input: deep })),
        yield* Effect.flip(Engine.createRun(OPERATOR, deep)),
        yield* Effect.flip(Engine.createRun(OPERATOR, { input: 1, metadata: { a: deep } })),
        yield* Effect.flip(Engine.issueKey(OPERATOR, { scopes: ["runs:read"], name: deep })),
        yield* Effect.flip(Engine.listRuns(OPERATOR, { handler: deep }))
      ]
      for (const failure of failures)
        expect(failure).toMatchObject({ _tag: "ValidationError", reason_code: "VALIDATION_FAILED" })
    }).pipe(Effect.provide(layer))
  )
})

describe("validation details", () => {
  const layer = Layer.mergeAll(memoryStorage().layer, EngineConfig.layer(), KeyCache.layer())

  it.effect("quote a bounded slice of the offending value and list a bounded number of problems", () =>
    Effect.gen(function* () {
      const huge = "x".repeat(500_000)
      const tooMany = Object.fromEntries(Array.from({ length: 60 }, (_, i) => [`k${i}`, huge]))
      const failure = yield* Effect.flip(Engine.issueKey(OPERATOR, { scopes: ["runs:read"], ...tooMany }))
      expect(failure).toMatchObject({ reason_code: "VALIDATION_FAILED" })
      const details = "details" in failure ? (failure.details ?? []) : []
      expect(details.length).toBeGreaterThan(0)
      expect(details.length).toBeLessThanOrEqual(MAX_DETAILS)
      for (const detail of details) expect(detail.message.length).toBeLessThanOrEqual(MAX_DETAIL_CHARS)
      const named = yield* Effect.flip(Engine.issueKey(OPERATOR, { scopes: ["runs:read"], name: { huge } }))
      const [only] = "details" in named ? (named.details ?? []) : []
      expect(only?.message.length).toBeLessThanOrEqual(MAX_DETAIL_CHARS)
      expect(only?.message.endsWith("…")).toBe(true)
    }).pipe(Effect.provide(layer))
  )

  it.effect("redact a credential in the quoted value, even one the cut would split", () =>
    Effect.gen(function* () {
      const bearer = `Bearer ${"T0kenT0ken".repeat(8)}`
      const apiKey = `key_${"A".repeat(24)}:${"s".repeat(43)}`
      const cases = {
        bearer: `${bearer} ${"x".repeat(500)}`,
        key: `${apiKey} ${"x".repeat(600)}`,
        // Straddles the cut at MAX_DETAIL_CHARS: a redaction after it would miss the key's first part.
        split: `${"x".repeat(220)} ${apiKey} ${"x".repeat(400)}`
      }
      const failure = yield* Effect.flip(
        Engine.createRun(OPERATOR, { handler: "h", input: {}, metadata: cases }, { idempotencyKey: "idem-1" })
      )
      const details = "details" in failure ? (failure.details ?? []) : []
      expect([...new Set(details.map((d) => d.path))].sort()).toEqual([
        "metadata.bearer",
        "metadata.key",
        "metadata.split"
      ])
      const text = JSON.stringify(details)
      expect(text).toContain("[REDACTED]")
      expect(text).not.toContain("T0kenT0ken")
      expect(text).not.toContain("sssssssss")
      expect(text).not.toContain("key_AAAA")
    }).pipe(Effect.provide(layer))
  )
})
