/**
 * The Promise API an embedder uses: `createEngine` over the memory adapter.
 * Every rejection is a tagged error with a reason_code.
 */
import { memoryStorage } from "@baton/adapter-memory"
import { container } from "tsyringe"
import { afterEach, describe, expect, it } from "vitest"
import {
  type BatonEngine,
  createEngine,
  engineFromContainer,
  LOCAL_PRINCIPAL,
  registerEngine,
  Tokens
} from "../src/Container.js"
import { AuthError, RunConflict, RunNotFound, Unprocessable, ValidationError } from "../src/Errors.js"
import { REDACTED } from "../src/Redaction.js"

const engines: BatonEngine[] = []
const make = (): BatonEngine => {
  const engine = createEngine({ storage: memoryStorage(), handlers: { default: () => null } })
  engines.push(engine)
  return engine
}

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose()))
})

describe("createEngine", () => {
  it("creates, replays, cancels and streams a run", async () => {
    const engine = make()
    const created = await engine.createRun({ input: { q: "hi", password: "p" } }, { idempotencyKey: "k1" })
    expect(created._tag).toBe("Created")
    if (created._tag !== "Created") return
    expect(created.run.input).toEqual({ q: "hi", password: REDACTED })
    const again = await engine.createRun({ input: { q: "hi", password: "p" } }, { idempotencyKey: "k1" })
    expect(again).toMatchObject({ _tag: "Replayed", run: { id: created.run.id } })
    const reused = await engine.createRun({ input: { q: "bye" } }, { idempotencyKey: "k1" })
    expect(reused).toMatchObject({ _tag: "KeyReused", runId: created.run.id })
    const cancelled = await engine.cancelRun(created.run.id, { reason: "no" })
    expect(cancelled.status).toBe("cancelled")
    const seen: Array<[number, string]> = []
    for await (const e of await engine.subscribe(created.run.id)) seen.push([e.seq, e.type])
    expect(seen).toEqual([
      [1, "run.queued"],
      [2, "run.cancelled"]
    ])
    expect(await engine.getRun(created.run.id)).toEqual(cancelled)
    expect((await engine.listRuns()).data.map((r) => r.id)).toEqual([created.run.id])
    expect((await engine.readEvents(created.run.id, { after_seq: 1 })).data.map((e) => e.seq)).toEqual([2])
    await engine.ping()
  })

  it("rejects with tagged errors that carry a reason_code", async () => {
    const engine = make()
    const created = await engine.createRun({ input: 1 })
    const runId = created._tag === "Created" ? created.run.id : ""
    const cases: ReadonlyArray<[Promise<unknown>, new (...args: never[]) => Error, string]> = [
      [engine.getRun("run_01ARZ3NDEKTSV4RRFFQ69G5FAV"), RunNotFound, "RUN_NOT_FOUND"],
      [
        engine.getRun(runId, { ...LOCAL_PRINCIPAL, customerId: "someone-else" }),
        RunNotFound,
        "RUN_NOT_FOUND"
      ],
      [engine.createRun({ nope: 1 }), ValidationError, "VALIDATION_FAILED"],
      [
        engine.createRun({ input: 1 }, { requireIdempotencyKey: true }),
        ValidationError,
        "IDEMPOTENCY_KEY_MISSING"
      ],
      [engine.createRun({ input: 1, handler: "elsewhere" }), Unprocessable, "HANDLER_NOT_FOUND"],
      [engine.listRuns({ limit: 1000 }), ValidationError, "VALIDATION_FAILED"],
      [engine.readEvents(runId, { after_seq: -1 }), ValidationError, "VALIDATION_FAILED"],
      [engine.signalRun(runId, { action: "approve" }), RunConflict, "RUN_NOT_AWAITING_INPUT"],
      [engine.cancelRun(runId, { reason: 1 }), ValidationError, "VALIDATION_FAILED"],
      [engine.subscribe("nope"), RunNotFound, "RUN_NOT_FOUND"],
      [engine.issueKey({ scopes: [] }), ValidationError, "VALIDATION_FAILED"],
      [engine.verifyKey("key_abcdefgh:abcdefghijklmnopqrstuvwx"), AuthError, "AUTH_KEY_INVALID"],
      [engine.revokeKey("key_unknown123"), AuthError, "KEY_NOT_FOUND"],
      [engine.listKeys({ ...LOCAL_PRINCIPAL, scopes: ["runs:read"] }), AuthError, "AUTH_SCOPE_DENIED"]
    ]
    for (const [promise, errorClass, reasonCode] of cases) {
      const error = await promise.then(
        () => new Error("resolved"),
        (e: unknown) => e
      )
      expect(error, reasonCode).toBeInstanceOf(errorClass)
      expect(error, reasonCode).toMatchObject({ _tag: errorClass.name, reason_code: reasonCode })
    }
  })

  it("issues and verifies keys through the Promise API", async () => {
    const engine = make()
    const issued = await engine.issueKey({ scopes: ["runs:read"], name: "reader" })
    const principal = await engine.verifyKey(issued.key)
    expect(principal).toEqual({ customerId: "default", keyId: issued.key_id, scopes: ["runs:read"] })
    await expect(engine.createRun({ input: 1 }, { principal })).rejects.toMatchObject({
      _tag: "AuthError",
      reason_code: "AUTH_SCOPE_DENIED"
    })
    await engine.revokeKey(issued.key_id)
    await expect(engine.verifyKey(issued.key)).rejects.toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
    expect((await engine.listKeys()).map((k) => k.key_id)).toEqual([issued.key_id])
  })

  it("accepts any handler name in an API-only engine", async () => {
    const engine = createEngine({ storage: memoryStorage(), acceptAnyHandler: true })
    engines.push(engine)
    const created = await engine.createRun({ input: 1, handler: "elsewhere" })
    expect(created).toMatchObject({ _tag: "Created", run: { handler: "elsewhere" } })
  })

  it("is built from a child container's registrations, leaving the global container alone", async () => {
    const child = container.createChildContainer()
    const storage = memoryStorage()
    registerEngine(child, { storage, handlers: { default: () => null } })
    const engine = engineFromContainer(child)
    engines.push(engine)
    expect(container.isRegistered(Tokens.Storage)).toBe(false)
    expect(child.isRegistered(Tokens.Storage)).toBe(true)
    const created = await engine.createRun({ input: 1 })
    expect(created._tag).toBe("Created")
    await expect(engine.createRun({ input: 1, handler: "other" })).rejects.toMatchObject({
      reason_code: "HANDLER_NOT_FOUND"
    })
    // engines on one adapter value share its store
    const twin = createEngine({ storage, handlers: { default: () => null } })
    engines.push(twin)
    expect((await twin.listRuns()).data).toHaveLength(1)
  })

  it("carries acceptAnyHandler through a container", async () => {
    const child = container.createChildContainer()
    registerEngine(child, { storage: memoryStorage(), acceptAnyHandler: true })
    const engine = engineFromContainer(child)
    engines.push(engine)
    expect(await engine.createRun({ input: 1, handler: "elsewhere" })).toMatchObject({ _tag: "Created" })
  })
})

describe("subscribe's async iterator", () => {
  it("settles a pending next() when the consumer returns, and every next() after it", async () => {
    const engine = createEngine({ storage: memoryStorage(), handlers: { default: () => null } })
    const created = await engine.createRun({ input: 1 })
    if (created._tag === "KeyReused") throw new Error("unexpected")
    const iterator = (await engine.subscribe(created.run.id))[Symbol.asyncIterator]()
    expect((await iterator.next()).value).toMatchObject({ seq: 1 })
    // Nothing more will come: this next() waits…
    const pending = iterator.next()
    await iterator.return?.()
    // …and is settled by return(), as is any later call.
    expect(await pending).toEqual({ done: true, value: undefined })
    expect(await iterator.next()).toEqual({ done: true, value: undefined })
    await engine.dispose()
  })
})

describe("subscribe past the end", () => {
  it("refuses an after_seq past a live run's last event instead of waiting forever", async () => {
    const engine = createEngine({ storage: memoryStorage(), handlers: { default: () => null } })
    const created = await engine.createRun({ input: 1 })
    if (created._tag === "KeyReused") throw new Error("unexpected")
    await expect(engine.subscribe(created.run.id, { afterSeq: 50 })).rejects.toMatchObject({
      reason_code: "VALIDATION_FAILED"
    })
    // A finished run past its end is simply an empty stream.
    await engine.cancelRun(created.run.id)
    const events = []
    for await (const e of await engine.subscribe(created.run.id, { afterSeq: 50 })) events.push(e)
    expect(events).toEqual([])
    await engine.dispose()
  })
})
