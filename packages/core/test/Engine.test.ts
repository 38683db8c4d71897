/**
 * The engine's programs over the memory adapter, on the TestClock: time only
 * moves when a test adjusts it.
 */
import { memoryStorage } from "@baton/adapter-memory"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Chunk, Effect, Exit, Fiber, Layer, Option, Stream, TestClock } from "effect"
import { ALL_SCOPES, makeSecret, type Principal } from "../src/ApiKey.js"
import type { EngineServices } from "../src/Container.js"
import * as Engine from "../src/Engine.js"
import { EngineConfig, type EngineConfigShape } from "../src/EngineConfig.js"
import { KeyCache } from "../src/KeyCache.js"
import { EventFeed } from "../src/ports/EventFeed.js"
import { REDACTED } from "../src/Redaction.js"
import type { Run } from "../src/Run.js"
import { RunEventReaders } from "../src/RunEventReaders.js"
import * as RunState from "../src/RunState.js"

const { RunCommand } = RunState

const ACME: Principal = { customerId: "acme", keyId: null, scopes: ALL_SCOPES }
const GLOBEX: Principal = { customerId: "globex", keyId: null, scopes: ALL_SCOPES }
/** The operator customer (EngineConfig.operatorCustomerId defaults to "default"). */
const OPERATOR: Principal = { customerId: "default", keyId: null, scopes: ALL_SCOPES }

const testLayer = (config: Partial<EngineConfigShape> = {}) =>
  RunEventReaders.layer.pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        memoryStorage().layer,
        EngineConfig.layer({ handlers: new Set(["default"]), ...config }),
        KeyCache.layer(config.keyCacheTtlMs)
      )
    )
  )

/** Runs `self` on a fresh store. */
const fresh =
  (config: Partial<EngineConfigShape> = {}) =>
  <A, E, R>(self: Effect.Effect<A, E, R>) =>
    Effect.provide(self, testLayer(config))

const iso = (ms: number) => new Date(ms).toISOString()

const createOk = (principal: Principal, body: unknown, options?: Parameters<typeof Engine.createRun>[2]) =>
  Effect.flatMap(Engine.createRun(principal, body, options), (r) =>
    r._tag === "Created" ? Effect.succeed(r.run) : Effect.dieMessage(`expected Created, got ${r._tag}`)
  )

const claimOne = Effect.flatMap(Engine.claimRuns("w1", { leaseMs: 30_000, max: 1 }), (runs) =>
  runs.length === 1 ? Effect.succeed(runs[0]!) : Effect.dieMessage(`claimed ${runs.length} runs`)
)

/** Claims `run` and applies worker commands with its lease. */
const work = (run: Run, ...commands: ReadonlyArray<(leaseToken: string) => RunState.RunCommand>) =>
  Effect.gen(function* () {
    const claimed = yield* claimOne
    expect(claimed.id).toBe(run.id)
    const leaseToken = claimed.lease_token!
    for (const command of commands) yield* Engine.applyCommand(run.id, command(leaseToken), { leaseToken })
    return leaseToken
  })

const awaitInput =
  (fields: Omit<Parameters<typeof RunCommand.AwaitInput>[0], "leaseToken" | "prompt">) =>
  (leaseToken: string) =>
    RunCommand.AwaitInput({ leaseToken, prompt: "Title?", ...fields })

const types = (page: Engine.EventPage) => page.data.map((e) => e.type)

describe("createRun", () => {
  it.effect("creates a queued run, redacted, with run.queued at seq 1", () =>
    Effect.gen(function* () {
      const result = yield* Engine.createRun(
        ACME,
        { input: { q: "hi", password: "p" }, metadata: { env: "prod" } },
        { idempotencyKey: "k1" }
      )
      expect(result._tag).toBe("Created")
      const run = result._tag === "Created" ? result.run : null
      expect(run).toMatchObject({
        status: "queued",
        handler: "default",
        input: { q: "hi", password: REDACTED },
        metadata: { env: "prod" },
        output: null,
        error: null,
        last_seq: 1,
        usage: { steps: 0, attempts: 1, tokens: 0, cost_usd: 0 },
        cancel_requested: false,
        created_at: iso(0)
      })
      expect(run?.id).toMatch(/^run_[0-9A-Z]{26}$/)
      const events = yield* Engine.readEvents(ACME, run!.id)
      expect(events.data).toEqual([
        {
          seq: 1,
          type: "run.queued",
          timestamp: iso(0),
          payload: { redacted: false, value: { handler: "default", metadata: { env: "prod" } } }
        }
      ])
    }).pipe(fresh())
  )

  it.effect("replays the same key and body as the run is now, whatever the key order", () =>
    Effect.gen(function* () {
      const first = yield* createOk(
        ACME,
        { input: { a: 1, b: 2 }, metadata: { x: "y" } },
        { idempotencyKey: "k" }
      )
      yield* TestClock.adjust("1 minute")
      yield* Engine.cancelRun(ACME, first.id, {})
      const again = yield* Engine.createRun(
        ACME,
        { metadata: { x: "y" }, input: { b: 2, a: 1 } },
        { idempotencyKey: "k" }
      )
      expect(again._tag).toBe("Replayed")
      expect(again._tag === "Replayed" && again.run).toMatchObject({
        id: first.id,
        status: "cancelled",
        last_seq: 2
      })
      // defaults applied: naming the default handler is the same request
      const named = yield* Engine.createRun(
        ACME,
        { input: { a: 1, b: 2 }, metadata: { x: "y" }, handler: "default" },
        { idempotencyKey: "k" }
      )
      expect(named._tag).toBe("Replayed")
      const page = yield* Engine.listRuns(ACME, {})
      expect(page.data).toHaveLength(1)
    }).pipe(fresh())
  )

  it.effect("reports a key reused with another body as data", () =>
    Effect.gen(function* () {
      const first = yield* createOk(ACME, { input: 1 }, { idempotencyKey: "k" })
      const reused = yield* Engine.createRun(ACME, { input: 2 }, { idempotencyKey: "k" })
      expect(reused).toEqual(Engine.CreateRunResult.KeyReused({ runId: first.id }))
      // the key is scoped by customer
      const other = yield* Engine.createRun(GLOBEX, { input: 2 }, { idempotencyKey: "k" })
      expect(other._tag).toBe("Created")
    }).pipe(fresh())
  )

  it.effect("lets an expired key create a new run", () =>
    Effect.gen(function* () {
      const first = yield* createOk(ACME, { input: 1 }, { idempotencyKey: "k" })
      yield* TestClock.adjust("23 hours")
      const replay = yield* Engine.createRun(ACME, { input: 1 }, { idempotencyKey: "k" })
      expect(replay._tag === "Replayed" && replay.run.id).toBe(first.id)
      yield* TestClock.adjust("1 hour")
      const second = yield* createOk(ACME, { input: 1 }, { idempotencyKey: "k" })
      expect(second.id).not.toBe(first.id)
      expect(second.created_at).toBe(iso(24 * 3600 * 1000))
      // the key now answers with the new run
      const replay2 = yield* Engine.createRun(ACME, { input: 1 }, { idempotencyKey: "k" })
      expect(replay2._tag === "Replayed" && replay2.run.id).toBe(second.id)
    }).pipe(fresh())
  )

  it.effect("honours a configured key lifetime", () =>
    Effect.gen(function* () {
      const first = yield* createOk(ACME, { input: 1 }, { idempotencyKey: "k" })
      yield* TestClock.adjust("10 seconds")
      const second = yield* createOk(ACME, { input: 1 }, { idempotencyKey: "k" })
      expect(second.id).not.toBe(first.id)
    }).pipe(fresh({ idempotencyTtlMs: 10_000 }))
  )

  it.effect("checks the idempotency key", () =>
    Effect.gen(function* () {
      const missing = yield* Effect.flip(
        Engine.createRun(ACME, { input: 1 }, { requireIdempotencyKey: true })
      )
      expect(missing).toMatchObject({ _tag: "ValidationError", reason_code: "IDEMPOTENCY_KEY_MISSING" })
      const empty = yield* Effect.flip(Engine.createRun(ACME, { input: 1 }, { idempotencyKey: "" }))
      expect(empty.reason_code).toBe("IDEMPOTENCY_KEY_MISSING")
      for (const key of ["x".repeat(256), "has space", "ünïcode"]) {
        const invalid = yield* Effect.flip(Engine.createRun(ACME, { input: 1 }, { idempotencyKey: key }))
        expect(invalid).toMatchObject({
          _tag: "ValidationError",
          reason_code: "IDEMPOTENCY_KEY_INVALID",
          details: [{ path: "idempotency-key" }]
        })
      }
      // no key and none required: fine
      yield* createOk(ACME, { input: 1 })
    }).pipe(fresh())
  )

  it.effect("refuses malformed bodies with VALIDATION_FAILED and the failing fields", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<[unknown, string]> = [
        [undefined, "(body)"],
        ["text", "(body)"],
        [{}, "input"],
        [{ input: 1, extra: true }, "extra"],
        [{ input: { n: Number.NaN } }, "input"],
        [{ input: 1, metadata: { "": 1 } }, "metadata"],
        [
          { input: 1, metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])) },
          "metadata"
        ],
        [{ input: 1, metadata: { k: { nested: true } } }, "metadata.k"],
        // Metadata is indexed: text no store can index as it is (U+0000, unpaired surrogates) is refused.
        [{ input: 1, metadata: { k: "a\u0000b" } }, "metadata.k"],
        [{ input: 1, metadata: { k: "\ud800" } }, "metadata.k"],
        [{ input: 1, metadata: { "k\u0000": 1 } }, "metadata"],
        [{ input: 1, handler: "bad name!" }, "handler"],
        [{ input: 1, limits: { max_steps: 0 } }, "limits.max_steps"],
        [{ input: 1, limits: { unknown_limit: 1 } }, "limits.unknown_limit"]
      ]
      for (const [body, path] of cases) {
        const e = yield* Effect.flip(Engine.createRun(ACME, body))
        expect(e._tag, JSON.stringify(body)).toBe("ValidationError")
        expect(e.reason_code).toBe("VALIDATION_FAILED")
        const paths = e._tag === "ValidationError" ? e.details.map((d) => d.path) : []
        expect(
          paths.some((p) => p.startsWith(path)),
          `${JSON.stringify(body)}: ${paths.join(", ")}`
        ).toBe(true)
      }
      expect((yield* Engine.listRuns(ACME, {})).data).toEqual([])
    }).pipe(fresh())
  )

  it.effect("refuses a handler nobody registered with HANDLER_NOT_FOUND", () =>
    Effect.gen(function* () {
      const e = yield* Effect.flip(Engine.createRun(ACME, { input: 1, handler: "missing" }))
      expect(e).toMatchObject({
        _tag: "Unprocessable",
        reason_code: "HANDLER_NOT_FOUND",
        details: [{ path: "handler" }]
      })
    }).pipe(fresh())
  )

  it.effect("needs the runs:write scope", () =>
    Effect.gen(function* () {
      const reader: Principal = { ...ACME, scopes: ["runs:read"] }
      const e = yield* Effect.flip(Engine.createRun(reader, { input: 1 }))
      expect(e).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_SCOPE_DENIED" })
    }).pipe(fresh())
  )
})

describe("getRun", () => {
  it.effect("returns the caller's run and hides everyone else's", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      expect(yield* Engine.getRun(ACME, run.id)).toEqual(run)
      for (const [principal, id] of [
        [GLOBEX, run.id],
        [ACME, "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        [ACME, "not-a-run-id"],
        [ACME, ""]
      ] as const) {
        const e = yield* Effect.flip(Engine.getRun(principal, id))
        expect(e).toMatchObject({ _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" })
      }
    }).pipe(fresh())
  )
})

describe("listRuns", () => {
  it.effect("filters by status, handler, creation time and metadata", () =>
    Effect.gen(function* () {
      const r1 = yield* createOk(ACME, { input: 1, metadata: { team: "a", tier: 1 } })
      yield* TestClock.adjust("1 second")
      const r2 = yield* createOk(ACME, { input: 2, handler: "beta", metadata: { team: "b" } })
      yield* TestClock.adjust("1 second")
      const r3 = yield* createOk(ACME, { input: 3, metadata: { team: "a", tier: "1" } })
      yield* Engine.cancelRun(ACME, r3.id)
      const theirs = yield* createOk(GLOBEX, { input: 4, metadata: { team: "a" } })

      const ids = (query: unknown) => Effect.map(Engine.listRuns(ACME, query), (p) => p.data.map((r) => r.id))
      expect(yield* ids({})).toEqual([r3.id, r2.id, r1.id])
      expect(yield* ids({ status: ["cancelled"] })).toEqual([r3.id])
      expect(yield* ids({ status: ["queued", "running"] })).toEqual([r2.id, r1.id])
      expect(yield* ids({ handler: "beta" })).toEqual([r2.id])
      expect(yield* ids({ metadata: { team: "a" } })).toEqual([r3.id, r1.id])
      // same type, same value
      expect(yield* ids({ metadata: { tier: 1 } })).toEqual([r1.id])
      expect(yield* ids({ created_after: iso(1000) })).toEqual([r3.id, r2.id])
      expect(yield* ids({ created_before: iso(1000) })).toEqual([r1.id])
      expect(yield* ids({ created_after: iso(1000), created_before: iso(2000) })).toEqual([r2.id])
      expect((yield* Engine.listRuns(GLOBEX, {})).data.map((r) => r.id)).toEqual([theirs.id])
      const page = yield* Engine.listRuns(ACME, {})
      expect(page).toMatchObject({ has_more: false, next_cursor: null })
    }).pipe(fresh({ handlers: new Set(["default", "beta"]) }))
  )

  it.effect("pages with a cursor that is stable under inserts", () =>
    Effect.gen(function* () {
      const created: string[] = []
      for (let i = 0; i < 5; i++) {
        created.push((yield* createOk(ACME, { input: i })).id)
        // two runs share each millisecond: the id breaks the tie
        if (i % 2 === 1) yield* TestClock.adjust("1 millis")
      }
      const newestFirst = [...created].reverse()
      const p1 = yield* Engine.listRuns(ACME, { limit: 2 })
      expect(p1.data.map((r) => r.id)).toEqual(newestFirst.slice(0, 2))
      expect(p1.has_more).toBe(true)
      expect(p1.next_cursor).toEqual(expect.any(String))
      // a run created between pages belongs before the first page, never in a later one
      const late = yield* createOk(ACME, { input: "late" })
      const p2 = yield* Engine.listRuns(ACME, { limit: 2, cursor: p1.next_cursor })
      expect(p2.data.map((r) => r.id)).toEqual(newestFirst.slice(2, 4))
      const p3 = yield* Engine.listRuns(ACME, { limit: 2, cursor: p2.next_cursor })
      expect(p3.data.map((r) => r.id)).toEqual(newestFirst.slice(4))
      expect(p3).toMatchObject({ has_more: false, next_cursor: null })
      const all = yield* Engine.listRuns(ACME, { limit: 100 })
      expect(all.data.map((r) => r.id)).toEqual([late.id, ...newestFirst])
      // the default page is 20
      for (let i = 0; i < 20; i++) yield* createOk(ACME, { input: i })
      const page = yield* Engine.listRuns(ACME, {})
      expect(page.data).toHaveLength(20)
      expect(page.has_more).toBe(true)
    }).pipe(fresh())
  )

  it.effect("refuses bad queries and forged cursors", () =>
    Effect.gen(function* () {
      const forge = (payload: unknown) => Buffer.from(JSON.stringify(payload)).toString("base64url")
      const forged = forge({ c: "x" })
      for (const query of [
        null,
        { limit: 0 },
        { limit: 101 },
        { limit: 1.5 },
        { status: ["nope"] },
        { status: "queued" },
        { created_after: "yesterday" },
        { cursor: "%%%" },
        { cursor: forged },
        // Well-formed JSON, but not what the API encodes: a cursor names a run id and a ms timestamp.
        { cursor: forge({ c: 1, i: "x\u0000" }) },
        { cursor: forge({ c: 1e300, i: "run_01JD0000000000000000000000" }) },
        { cursor: "x".repeat(600) },
        { unknown: 1 }
      ]) {
        const e = yield* Effect.flip(Engine.listRuns(ACME, query))
        expect(e, JSON.stringify(query)).toMatchObject({
          _tag: "ValidationError",
          reason_code: "VALIDATION_FAILED"
        })
      }
    }).pipe(fresh())
  )
})

describe("readEvents", () => {
  it.effect("pages through a run's log by seq", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      yield* work(
        run,
        (leaseToken) => RunCommand.StartStep({ leaseToken, stepId: "s1", name: "fetch", attempt: 1 }),
        (leaseToken) =>
          RunCommand.Progress({
            leaseToken,
            items: [
              { stepId: "s1", kind: "content_delta", fields: { content_delta: "a" } },
              { stepId: "s1", kind: "content_delta", fields: { content_delta: "b" } }
            ]
          }),
        (leaseToken) => RunCommand.FinishStep({ leaseToken, stepId: "s1", outcome: "succeeded", output: 1 })
      )
      const p1 = yield* Engine.readEvents(ACME, run.id, { limit: 2 })
      expect(p1.data.map((e) => e.seq)).toEqual([1, 2])
      expect(types(p1)).toEqual(["run.queued", "run.started"])
      expect(p1).toMatchObject({ has_more: true, next_after_seq: 2 })
      expect(Object.keys(p1.data[0]!).sort()).toEqual(["payload", "seq", "timestamp", "type"])
      const p2 = yield* Engine.readEvents(ACME, run.id, { after_seq: 2, limit: 2 })
      expect(p2.data.map((e) => e.seq)).toEqual([3, 4])
      const p3 = yield* Engine.readEvents(ACME, run.id, { after_seq: 4, limit: 2 })
      expect(types(p3)).toEqual(["step.progress", "step.done"])
      expect(p3).toMatchObject({ has_more: false, next_after_seq: 6 })
      const p4 = yield* Engine.readEvents(ACME, run.id, { after_seq: 6 })
      expect(p4).toEqual({ data: [], has_more: false, next_after_seq: 6 })
      const all = yield* Engine.readEvents(ACME, run.id)
      expect(all.data.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6])
    }).pipe(fresh())
  )

  it.effect("refuses bad queries and other customers' runs", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      for (const query of [{ after_seq: -1 }, { after_seq: 1.5 }, { limit: 0 }, { limit: 1001 }, { x: 1 }]) {
        const e = yield* Effect.flip(Engine.readEvents(ACME, run.id, query))
        expect(e, JSON.stringify(query)).toMatchObject({
          _tag: "ValidationError",
          reason_code: "VALIDATION_FAILED"
        })
      }
      const e = yield* Effect.flip(Engine.readEvents(GLOBEX, run.id))
      expect(e).toMatchObject({ _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" })
    }).pipe(fresh())
  )
})

describe("subscribe", () => {
  it.effect("replays a finished run and ends", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      yield* Engine.cancelRun(ACME, run.id, { reason: "no" })
      const stream = yield* Engine.subscribe(ACME, run.id)
      const events = Chunk.toArray(yield* Stream.runCollect(stream))
      expect(events.map((e) => [e.seq, e.type])).toEqual([
        [1, "run.queued"],
        [2, "run.cancelled"]
      ])
      const after = yield* Engine.subscribe(ACME, run.id, 1)
      expect(Chunk.toArray(yield* Stream.runCollect(after)).map((e) => e.seq)).toEqual([2])
      const past = yield* Engine.subscribe(ACME, run.id, 2)
      expect(Chunk.size(yield* Stream.runCollect(past))).toBe(0)
    }).pipe(fresh())
  )

  it.effect("follows a live run until its terminal event", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const stream = yield* Engine.subscribe(ACME, run.id)
      const collecting = yield* Effect.fork(Stream.runCollect(stream))
      yield* Effect.yieldNow()
      yield* work(
        run,
        (leaseToken) => RunCommand.StartStep({ leaseToken, stepId: "s1", name: "s1", attempt: 1 }),
        (leaseToken) => RunCommand.FinishStep({ leaseToken, stepId: "s1", outcome: "succeeded" }),
        (leaseToken) => RunCommand.Succeed({ leaseToken, output: { ok: true } })
      )
      yield* TestClock.adjust("1 second")
      const events = Chunk.toArray(yield* Fiber.join(collecting))
      expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
      expect(events.at(-1)?.type).toBe("run.worker.succeeded")
    }).pipe(fresh())
  )

  it.effect("a feed that loses every hint costs latency, never an event", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const stream = yield* Engine.subscribe(ACME, run.id)
      const seen: number[] = []
      const collecting = yield* Effect.fork(
        Stream.runForEach(stream, (e) => Effect.sync(() => seen.push(e.seq)))
      )
      for (let i = 0; i < 100 && seen.length === 0; i++) yield* Effect.yieldNow()
      yield* work(run, (leaseToken) => RunCommand.Succeed({ leaseToken, output: null }))
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      // No hint arrives, so nothing past the first read until a poll tick…
      expect(seen).toEqual([1])
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(collecting)
      // …which brings every event, once, in order.
      expect(seen).toEqual([1, 2, 3])
    }).pipe(
      Effect.provide(
        // The later layer wins: this feed replaces the memory adapter's.
        Layer.merge(testLayer(), Layer.succeed(EventFeed, { subscribe: () => Effect.succeed(Stream.never) }))
      )
    )
  )

  it.effect("refuses a bad after_seq and another customer's run", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const bad = yield* Effect.flip(Engine.subscribe(ACME, run.id, -1))
      expect(bad).toMatchObject({ _tag: "ValidationError", reason_code: "VALIDATION_FAILED" })
      const hidden = yield* Effect.flip(Engine.subscribe(GLOBEX, run.id))
      expect(hidden).toMatchObject({ _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" })
    }).pipe(fresh())
  )
})

describe("signalRun", () => {
  it.effect("a signal retried with its idempotency key is answered as the first, even at the next wait", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const leaseToken = yield* work(run, awaitInput({ actions: ["approve", "reject"] }))
      const first = yield* Engine.signalRun(ACME, run.id, { action: "approve" }, { idempotencyKey: "sig-1" })
      expect(first.status).toBe("queued")
      // The run waits again; a retry of the first signal must not answer this new wait.
      const claimed = yield* claimOne
      yield* Engine.applyCommand(
        run.id,
        awaitInput({ actions: ["approve", "reject"] })(claimed.lease_token!),
        {
          leaseToken: claimed.lease_token
        }
      )
      const retried = yield* Engine.signalRun(
        ACME,
        run.id,
        { action: "approve" },
        { idempotencyKey: "sig-1" }
      )
      expect(retried.status).toBe("awaiting_input")
      const reused = yield* Effect.flip(
        Engine.signalRun(ACME, run.id, { action: "reject" }, { idempotencyKey: "sig-1" })
      )
      expect(reused).toMatchObject({ _tag: "RunConflict", reason_code: "IDEMPOTENCY_KEY_REUSED" })
      const bad = yield* Effect.flip(
        Engine.signalRun(ACME, run.id, { action: "approve" }, { idempotencyKey: "" })
      )
      expect(bad).toMatchObject({ reason_code: "IDEMPOTENCY_KEY_INVALID" })
      const events = yield* Engine.readEvents(ACME, run.id, { limit: 100 })
      expect(events.data.filter((e) => e.type === "run.signal_received").map((e) => e.payload.value)).toEqual(
        [{ action: "approve", idempotency_key: "sig-1" }]
      )
      expect(leaseToken).not.toBe(claimed.lease_token)
    }).pipe(fresh())
  )

  const schema = { type: "object", required: ["title"], properties: { title: { type: "string" } } }

  it.effect("validates input against the wait's input_schema and resumes the run", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      yield* work(run, awaitInput({ actions: ["submit_input", "reject"], inputSchema: schema }))
      const waiting = yield* Engine.getRun(ACME, run.id)
      expect(waiting).toMatchObject({
        status: "awaiting_input",
        awaiting_input: { prompt: "Title?", actions: ["submit_input", "reject"], input_schema: schema }
      })

      const invalid = yield* Effect.flip(
        Engine.signalRun(ACME, run.id, { action: "submit_input", input: { title: 5 } })
      )
      expect(invalid).toMatchObject({
        _tag: "Unprocessable",
        reason_code: "SIGNAL_INPUT_INVALID",
        details: [{ path: "input.title", message: "must be string" }]
      })
      const none = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "submit_input" }))
      expect(none.reason_code).toBe("SIGNAL_INPUT_INVALID")
      const notOffered = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "approve" }))
      expect(notOffered).toMatchObject({ _tag: "Unprocessable", reason_code: "SIGNAL_INPUT_INVALID" })
      expect((yield* Engine.getRun(ACME, run.id)).last_seq).toBe(waiting.last_seq)

      const body = { action: "submit_input", input: { title: "Q4" }, comment: "here" }
      const resumed = yield* Engine.signalRun(ACME, run.id, body)
      expect(resumed).toMatchObject({
        status: "queued",
        awaiting_input: null,
        last_seq: waiting.last_seq + 2
      })
      const events = yield* Engine.readEvents(ACME, run.id, { after_seq: waiting.last_seq })
      expect(events.data.map((e) => e.payload.value)).toEqual([
        { action: "submit_input", input: { title: "Q4" }, comment: "here" },
        { reason: "signal", attempt: 2 }
      ])
      // a retried signal is a no-op; a different one conflicts
      expect(yield* Engine.signalRun(ACME, run.id, body)).toEqual(resumed)
      const late = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "reject" }))
      expect(late).toMatchObject({ _tag: "RunConflict", reason_code: "RUN_NOT_AWAITING_INPUT" })
    }).pipe(fresh())
  )

  it.effect("a signal to a wait that timed out (before any sweep) ends the run and is refused", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      yield* work(run, awaitInput({ actions: ["approve"], timeoutMs: 5_000 }))
      yield* TestClock.adjust("5 seconds")
      const late = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "approve" }))
      expect(late).toMatchObject({ _tag: "RunConflict", reason_code: "RUN_ALREADY_TERMINAL" })
      expect(yield* Engine.getRun(ACME, run.id)).toMatchObject({
        status: "limit_exceeded",
        error: { reason_code: "LIMIT_INPUT_TIMEOUT" }
      })
      expect(yield* Engine.sweep()).toBe(0)
    }).pipe(fresh())
  )

  it.effect("refuses a signal to a finished run, a bad body, a missing scope and another customer", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const bad = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "maybe" }))
      expect(bad).toMatchObject({ _tag: "ValidationError", reason_code: "VALIDATION_FAILED" })
      const queued = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "approve" }))
      expect(queued).toMatchObject({ _tag: "RunConflict", reason_code: "RUN_NOT_AWAITING_INPUT" })
      const noScope = yield* Effect.flip(
        Engine.signalRun({ ...ACME, scopes: ["runs:read", "runs:write"] }, run.id, { action: "approve" })
      )
      expect(noScope).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_SCOPE_DENIED" })
      const hidden = yield* Effect.flip(Engine.signalRun(GLOBEX, run.id, { action: "approve" }))
      expect(hidden).toMatchObject({ _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" })
      yield* Engine.cancelRun(ACME, run.id)
      const done = yield* Effect.flip(Engine.signalRun(ACME, run.id, { action: "approve" }))
      expect(done).toMatchObject({ _tag: "RunConflict", reason_code: "RUN_ALREADY_TERMINAL" })
    }).pipe(fresh())
  )
})

describe("cancelRun", () => {
  it.effect("cancels a queued run at once; repeating it changes nothing", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const cancelled = yield* Engine.cancelRun(ACME, run.id, { reason: "not needed" })
      expect(cancelled).toMatchObject({
        status: "cancelled",
        error: { reason_code: "RUN_CANCELLED", message: "not needed" },
        last_seq: 2
      })
      expect(yield* Engine.cancelRun(ACME, run.id, { reason: "again" })).toEqual(cancelled)
      // no body at all is fine
      const other = yield* createOk(ACME, { input: 2 })
      expect((yield* Engine.cancelRun(ACME, other.id)).status).toBe("cancelled")
    }).pipe(fresh())
  )

  it.effect("asks the worker of a running run", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const leaseToken = yield* work(run)
      const asked = yield* Engine.cancelRun(ACME, run.id, {})
      expect(asked).toMatchObject({ status: "running", cancel_requested: true, last_seq: 3 })
      expect(yield* Engine.cancelRun(ACME, run.id, {})).toEqual(asked)
      yield* Engine.applyCommand(run.id, RunCommand.Cancel({ leaseToken }), { leaseToken })
      expect((yield* Engine.getRun(ACME, run.id)).status).toBe("cancelled")
    }).pipe(fresh())
  )

  it.effect("refuses to cancel a run that ended otherwise, bad bodies and other customers", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const bad = yield* Effect.flip(Engine.cancelRun(ACME, run.id, { reason: 5 }))
      expect(bad).toMatchObject({ _tag: "ValidationError", reason_code: "VALIDATION_FAILED" })
      const hidden = yield* Effect.flip(Engine.cancelRun(GLOBEX, run.id, {}))
      expect(hidden).toMatchObject({ _tag: "RunNotFound", reason_code: "RUN_NOT_FOUND" })
      yield* work(run, (leaseToken) => RunCommand.Succeed({ leaseToken, output: 1 }))
      const done = yield* Effect.flip(Engine.cancelRun(ACME, run.id, {}))
      expect(done).toMatchObject({ _tag: "RunConflict", reason_code: "RUN_ALREADY_TERMINAL" })
    }).pipe(fresh())
  )
})

describe("sweep", () => {
  it.effect("fires an input timeout once it is due", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      yield* work(run, awaitInput({ actions: ["approve"], timeoutMs: 60_000 }))
      expect(yield* Engine.sweep()).toBe(0)
      yield* TestClock.adjust("59999 millis")
      expect(yield* Engine.sweep()).toBe(0)
      expect((yield* Engine.getRun(ACME, run.id)).status).toBe("awaiting_input")
      yield* TestClock.adjust("1 millis")
      expect(yield* Engine.sweep()).toBe(1)
      const ended = yield* Engine.getRun(ACME, run.id)
      expect(ended).toMatchObject({
        status: "limit_exceeded",
        error: { reason_code: "LIMIT_INPUT_TIMEOUT" },
        awaiting_input: null,
        finished_at: iso(60_000)
      })
      const last = (yield* Engine.readEvents(ACME, run.id)).data.at(-1)
      expect(last).toMatchObject({
        type: "run.limit_exceeded",
        payload: { value: { limit: "input_timeout", reason_code: "LIMIT_INPUT_TIMEOUT" } }
      })
      expect(yield* Engine.sweep()).toBe(0)
    }).pipe(fresh())
  )

  it.effect("requeues a run whose worker stopped renewing its lease", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1 })
      const leaseToken = yield* work(run)
      yield* TestClock.adjust("30 seconds")
      expect(yield* Engine.sweep()).toBe(1)
      expect((yield* Engine.getRun(ACME, run.id)).status).toBe("queued")
      const again = yield* claimOne
      expect(again.usage.attempts).toBe(2)
      expect(again.lease_token).not.toBe(leaseToken)
      const stale = yield* Effect.flip(
        Engine.applyCommand(run.id, RunCommand.Succeed({ leaseToken, output: 1 }), { leaseToken })
      )
      expect(stale).toMatchObject({ _tag: "TransitionRejected", reason_code: "LEASE_LOST" })
    }).pipe(fresh())
  )

  it.effect("ends a run at its deadline", () =>
    Effect.gen(function* () {
      const run = yield* createOk(ACME, { input: 1, limits: { max_duration_ms: 10_000 } })
      yield* work(run)
      yield* TestClock.adjust("10 seconds")
      expect(yield* Engine.sweep()).toBe(1)
      expect((yield* Engine.getRun(ACME, run.id)).error?.reason_code).toBe("LIMIT_MAX_DURATION")
    }).pipe(fresh())
  )
})

describe("API keys", () => {
  it.effect("issues a key shown once, verifies it, lists it without secrets and revokes it", () =>
    Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { name: "ci", scopes: ["runs:read", "runs:write"] })
      expect(issued).toMatchObject({
        customer_id: "default",
        name: "ci",
        scopes: ["runs:read", "runs:write"],
        created_at: iso(0),
        expires_at: null,
        revoked_at: null
      })
      expect(issued.key).toMatch(/^key_[A-Za-z0-9]{24}:[A-Za-z0-9_-]{43}$/)
      expect(issued.key.startsWith(`${issued.key_id}:`)).toBe(true)
      const secret = issued.key.slice(issued.key_id.length + 1)

      expect(yield* Engine.verifyKey(issued.key)).toEqual({
        customerId: "default",
        keyId: issued.key_id,
        scopes: ["runs:read", "runs:write"]
      })

      const listed = yield* Engine.listKeys(OPERATOR)
      expect(listed.map((k) => k.key_id)).toEqual([issued.key_id])
      expect(JSON.stringify(listed)).not.toContain(secret)
      expect(listed[0]).not.toHaveProperty("secret_hash")
      expect(listed[0]).not.toHaveProperty("key")

      yield* TestClock.adjust("1 second")
      const revoked = yield* Engine.revokeKey(OPERATOR, issued.key_id)
      expect(revoked.revoked_at).toBe(iso(1000))
      const e = yield* Effect.flip(Engine.verifyKey(issued.key))
      expect(e).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_KEY_INVALID" })
      expect((yield* Engine.listKeys(OPERATOR))[0]?.revoked_at).toBe(iso(1000))
    }).pipe(fresh())
  )

  it.effect("an expired key fails like any invalid key", () =>
    Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"], expires_at: iso(3_600_000) })
      expect(issued.expires_at).toBe(iso(3_600_000))
      yield* Engine.verifyKey(issued.key)
      yield* TestClock.adjust("1 hour")
      const e = yield* Effect.flip(Engine.verifyKey(issued.key))
      expect(e).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_KEY_INVALID" })
      const past = yield* Effect.flip(
        Engine.issueKey(OPERATOR, { scopes: ["runs:read"], expires_at: iso(0) })
      )
      expect(past).toMatchObject({ _tag: "ValidationError", details: [{ path: "expires_at" }] })
    }).pipe(fresh())
  )

  it.effect("refuses wrong secrets, unknown ids and malformed keys with one error", () =>
    Effect.gen(function* () {
      const issued = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"] })
      for (const presented of [
        `${issued.key_id}:${makeSecret()}`,
        `key_unknown0000000000000000:${makeSecret()}`,
        issued.key_id,
        `Bearer ${issued.key}`,
        "",
        null,
        42
      ]) {
        const e = yield* Effect.flip(Engine.verifyKey(presented as string))
        expect(e, String(presented)).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_KEY_INVALID" })
      }
    }).pipe(fresh())
  )

  it.effect("never grants more than the issuer holds, nor crosses customers", () =>
    Effect.gen(function* () {
      const admin: Principal = {
        customerId: "acme",
        keyId: "key_admin000",
        scopes: ["keys:admin", "runs:read"]
      }
      const escalate = yield* Effect.flip(Engine.issueKey(admin, { scopes: ["runs:read", "runs:write"] }))
      expect(escalate).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_SCOPE_DENIED" })
      expect(escalate.message).toContain("runs:write")
      const ok = yield* Engine.issueKey(admin, { scopes: ["runs:read"] })
      expect(ok.customer_id).toBe("acme")

      const cross = yield* Effect.flip(
        Engine.issueKey(admin, { scopes: ["runs:read"], customer_id: "globex" })
      )
      expect(cross).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_SCOPE_DENIED" })
      // the operator may
      const forGlobex = yield* Engine.issueKey(OPERATOR, { scopes: ["runs:read"], customer_id: "globex" })
      expect((yield* Engine.verifyKey(forGlobex.key)).customerId).toBe("globex")

      // a key issued through a verified key is bound by that key's scopes
      const issuer = yield* Engine.verifyKey(
        (yield* Engine.issueKey(OPERATOR, { scopes: ["keys:admin", "runs:signal"], customer_id: "acme" })).key
      )
      const denied = yield* Effect.flip(Engine.issueKey(issuer, { scopes: ["runs:read"] }))
      expect(denied.reason_code).toBe("AUTH_SCOPE_DENIED")

      // keys are listed and revoked per customer
      expect((yield* Engine.listKeys(GLOBEX)).map((k) => k.key_id)).toEqual([forGlobex.key_id])
      const foreign = yield* Effect.flip(Engine.revokeKey(admin, forGlobex.key_id))
      expect(foreign).toMatchObject({ _tag: "AuthError", reason_code: "KEY_NOT_FOUND" })
      const malformed = yield* Effect.flip(Engine.revokeKey(admin, "nope"))
      expect(malformed.reason_code).toBe("KEY_NOT_FOUND")
      yield* Engine.verifyKey(forGlobex.key)

      const noAdmin: Principal = { ...ACME, scopes: ["runs:read", "runs:write", "runs:signal"] }
      const adminOnly: ReadonlyArray<
        Effect.Effect<unknown, { readonly reason_code: string }, EngineServices>
      > = [
        Engine.issueKey(noAdmin, { scopes: ["runs:read"] }),
        Engine.listKeys(noAdmin),
        Engine.revokeKey(noAdmin, ok.key_id)
      ]
      for (const program of adminOnly) {
        const e = yield* Effect.flip(program)
        expect(e).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_SCOPE_DENIED" })
      }
    }).pipe(fresh())
  )

  it.effect("ensureKey creates the bootstrap key once and never replaces it", () =>
    Effect.gen(function* () {
      const key = "key_bootstrap01:abcdefghijklmnopqrstuvwxyz012345"
      const principal = yield* Engine.ensureKey(key, "default")
      expect(principal).toEqual({ customerId: "default", keyId: "key_bootstrap01", scopes: ALL_SCOPES })
      expect(yield* Engine.ensureKey(key, "default")).toEqual(principal)
      const other = yield* Effect.flip(
        Engine.ensureKey("key_bootstrap01:ZZZZZZZZZZZZZZZZZZZZZZZZZZ", "default")
      )
      expect(other).toMatchObject({ _tag: "AuthError", reason_code: "AUTH_KEY_INVALID" })
      for (const [presented, customer] of [
        ["not a key", "default"],
        [key, "bad customer!"]
      ] as const) {
        const e = yield* Effect.flip(Engine.ensureKey(presented, customer))
        expect(e).toMatchObject({ _tag: "ValidationError", reason_code: "VALIDATION_FAILED" })
      }
    }).pipe(fresh())
  )
})

describe("bad input", () => {
  it.effect(
    "every public program answers it with a tagged error carrying a reason_code, never a defect",
    () =>
      Effect.gen(function* () {
        const running = yield* createOk(ACME, { input: 2 })
        const leaseToken = yield* work(running)
        const run = yield* createOk(ACME, { input: 1 })
        const programs: ReadonlyArray<
          [string, Effect.Effect<unknown, { readonly reason_code: string }, EngineServices>]
        > = [
          ["createRun(undefined)", Engine.createRun(ACME, undefined)],
          ["createRun(array)", Engine.createRun(ACME, [1, 2])],
          ["createRun(key: number)", Engine.createRun(ACME, { input: 1 }, { idempotencyKey: 42 as never })],
          [
            "createRun(deep input)",
            Engine.createRun(ACME, { input: JSON.parse(`${"[".repeat(200)}${"]".repeat(200)}`) })
          ],
          ["getRun(undefined)", Engine.getRun(ACME, undefined as never)],
          ["getRun(object)", Engine.getRun(ACME, {} as never)],
          ["listRuns(string)", Engine.listRuns(ACME, "status=queued")],
          ["listRuns(cursor: number)", Engine.listRuns(ACME, { cursor: 5 })],
          ["readEvents(bad id)", Engine.readEvents(ACME, "../etc/passwd")],
          ["readEvents(null query)", Engine.readEvents(ACME, run.id, null)],
          ["signalRun(null)", Engine.signalRun(ACME, run.id, null)],
          ["signalRun(input: NaN)", Engine.signalRun(ACME, run.id, { action: "approve", input: Number.NaN })],
          ["cancelRun(array)", Engine.cancelRun(ACME, run.id, [])],
          ["subscribe(after: string)", Engine.subscribe(ACME, run.id, "1" as never)],
          ["issueKey(null)", Engine.issueKey(OPERATOR, null)],
          ["issueKey(scopes: [])", Engine.issueKey(OPERATOR, { scopes: [] })],
          ["issueKey(scope: root)", Engine.issueKey(OPERATOR, { scopes: ["root"] })],
          [
            "issueKey(expires_at: junk)",
            Engine.issueKey(OPERATOR, { scopes: ["runs:read"], expires_at: "soon" })
          ],
          ["verifyKey(object)", Engine.verifyKey({} as never)],
          ["revokeKey(number)", Engine.revokeKey(OPERATOR, 7 as never)],
          ["ensureKey(garbage)", Engine.ensureKey("garbage", "default")],
          ["ensureKey(number)", Engine.ensureKey(123 as never, "default")],
          [
            "ensureKey(customer: number)",
            Engine.ensureKey(`key_${"a".repeat(24)}:${"b".repeat(43)}`, 123 as never)
          ],
          ["claimRuns(workerId: number)", Engine.claimRuns(7 as never, { leaseMs: 1000, max: 1 })],
          ["claimRuns(leaseMs: NaN)", Engine.claimRuns("w", { leaseMs: Number.NaN, max: 1 })],
          ["claimRuns(max: -1)", Engine.claimRuns("w", { leaseMs: 1000, max: -1 })],
          ["sweep(NaN)", Engine.sweep(Number.NaN)],
          ["sweep(-1)", Engine.sweep(-1)],
          ["applyCommand(not a command)", Engine.applyCommand(run.id, { _tag: "Explode" } as never)],
          ["applyCommand(null)", Engine.applyCommand(run.id, null as never)]
        ]
        for (const [name, program] of programs) {
          const exit = yield* Effect.exit(program)
          expect(Exit.isFailure(exit), name).toBe(true)
          if (Exit.isFailure(exit)) {
            expect(Cause.isDie(exit.cause), `${name} died: ${Cause.pretty(exit.cause)}`).toBe(false)
            const failure = Cause.failureOption(exit.cause)
            expect(Option.isSome(failure), name).toBe(true)
            const error = Option.getOrThrow(failure) as { _tag?: unknown; reason_code?: unknown }
            expect(typeof error._tag, name).toBe("string")
            expect(error.reason_code, name).toMatch(/^[A-Z_]+$/)
          }
        }
        // commands a worker sends are checked too: an absurd wait is refused, not thrown
        const absurd = yield* Effect.exit(
          Engine.applyCommand(
            running.id,
            RunCommand.AwaitInput({ leaseToken, prompt: "?", actions: ["approve"], timeoutMs: 1e16 }),
            { leaseToken }
          )
        )
        expect(Exit.isFailure(absurd) && Cause.isDie(absurd.cause)).toBe(false)
        expect(Exit.isFailure(absurd) && Option.getOrNull(Cause.failureOption(absurd.cause))).toMatchObject({
          _tag: "TransitionRejected",
          reason_code: "VALIDATION_FAILED"
        })
        expect((yield* Engine.getRun(ACME, running.id)).status).toBe("running")
      }).pipe(fresh())
  )
})
