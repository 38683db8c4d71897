/**
 * The in-process RunsClient over a real engine (memory adapter, a worker in
 * this process): results and ApiErrors as a client sees them over HTTP.
 */
import { makeMemoryStore, memoryStorage } from "@baton/adapter-memory"
import {
  ApiError,
  type BatonEngine,
  createEngine,
  type EventFeedEncoded,
  InternalError,
  LOCAL_PRINCIPAL,
  type Principal,
  type RunContext,
  type RunEvent,
  type RunsClient,
  StorageError,
  storageUnavailable,
  TransitionRejected,
  toApiError
} from "@baton/core"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { createInProcessClient } from "../src/index.js"

const handlers = {
  default: async (run: RunContext) => {
    const doubled = await run.step("double", () => (run.input as { n: number }).n * 2)
    return { doubled }
  },
  approval: async (run: RunContext) => {
    const decision = await run.awaitInput({ prompt: "Go?", actions: ["approve", "reject"] })
    return { approved: decision.action === "approve" }
  }
}

interface Harness {
  readonly engine: BatonEngine
  readonly client: RunsClient
  /** Event-feed subscriptions open right now: what a stream holds while it lives. */
  readonly openSubscriptions: () => number
}

const engines: BatonEngine[] = []

const make = async (options: { worker?: boolean } = {}): Promise<Harness> => {
  const store = makeMemoryStore()
  let open = 0
  const eventFeed: EventFeedEncoded = {
    subscribe: (runId) =>
      Effect.acquireRelease(
        Effect.sync(() => {
          open++
        }),
        () =>
          Effect.sync(() => {
            open--
          })
      ).pipe(Effect.zipRight(store.eventFeed.subscribe(runId)))
  }
  const engine = createEngine({ storage: memoryStorage({ ...store, eventFeed }), handlers })
  engines.push(engine)
  if (options.worker !== false) await engine.startWorker({ pollIntervalMs: 5 })
  return { engine, client: createInProcessClient(engine), openSubscriptions: () => open }
}

afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose()))
})

const rejection = (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(
    () => new Error("resolved"),
    (e: unknown) => e
  )

const collect = async (events: AsyncIterable<RunEvent>): Promise<RunEvent[]> => {
  const out: RunEvent[] = []
  for await (const e of events) out.push(e)
  return out
}

describe("createRun", () => {
  it("maps Created, Replayed and KeyReused", async () => {
    const { client } = await make({ worker: false })
    const created = await client.createRun({ input: { n: 1 } }, { idempotencyKey: "k1" })
    expect(created.replayed).toBe(false)
    expect(created.run).toMatchObject({ status: "queued", handler: "default", input: { n: 1 }, last_seq: 1 })
    const replayed = await client.createRun({ input: { n: 1 } }, { idempotencyKey: "k1" })
    expect(replayed).toEqual({ run: created.run, replayed: true })
    const reused = await rejection(client.createRun({ input: { n: 2 } }, { idempotencyKey: "k1" }))
    expect(reused).toBeInstanceOf(ApiError)
    expect(reused).toMatchObject({
      status: 409,
      reason_code: "IDEMPOTENCY_KEY_REUSED",
      request_id: null,
      retry_after: null
    })
  })

  it("requires the idempotency key, as the HTTP API does", async () => {
    const { client } = await make({ worker: false })
    const error = await rejection(client.createRun({ input: 1 }, { idempotencyKey: "" }))
    expect(error).toMatchObject({
      status: 400,
      reason_code: "IDEMPOTENCY_KEY_MISSING",
      details: [{ path: "idempotency-key", message: "is required" }]
    })
  })
})

describe("a run taken to succeeded by a worker", () => {
  it("streams every event once, in order, and ends after the terminal event", async () => {
    const { client, openSubscriptions } = await make()
    const { run } = await client.createRun({ input: { n: 21 } }, { idempotencyKey: "a" })
    const events = await collect(client.streamEvents(run.id))
    expect(events.map((e) => e.type)).toEqual([
      "run.queued",
      "run.started",
      "step.started",
      "step.done",
      "run.worker.succeeded"
    ])
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5])
    expect(events.at(-1)!.payload.value).toEqual({ output: { doubled: 42 } })
    expect(openSubscriptions()).toBe(0)
    const done = await client.getRun(run.id)
    expect(done).toMatchObject({ status: "succeeded", output: { doubled: 42 }, last_seq: 5 })
    // A stream of a terminal run replays after afterSeq, then ends.
    const tail = await collect(client.streamEvents(run.id, { afterSeq: 3 }))
    expect(tail.map((e) => e.seq)).toEqual([4, 5])
    expect(await collect(client.streamEvents(run.id, { afterSeq: 5 }))).toEqual([])
    // Each iteration of the iterable is its own subscription from the start.
    const iterable = client.streamEvents(run.id, { afterSeq: 4 })
    expect((await collect(iterable)).map((e) => e.seq)).toEqual([5])
    expect((await collect(iterable)).map((e) => e.seq)).toEqual([5])
    expect(await client.readEvents(run.id, { after_seq: 2, limit: 2 })).toEqual({
      data: events.slice(2, 4),
      has_more: true,
      next_after_seq: 4
    })
  })
})

describe("streamEvents", () => {
  it("ends a live stream when the signal aborts, freeing the subscription", async () => {
    const { client, openSubscriptions } = await make()
    const { run } = await client.createRun({ input: null, handler: "approval" }, { idempotencyKey: "a" })
    const controller = new AbortController()
    const seen: string[] = []
    for await (const e of client.streamEvents(run.id, { signal: controller.signal })) {
      seen.push(e.type)
      expect(openSubscriptions()).toBe(1)
      // Abort later, while the stream waits for an event that will not come.
      if (e.type === "run.awaiting_input") setImmediate(() => controller.abort())
    }
    expect(seen).toEqual(["run.queued", "run.started", "run.awaiting_input"])
    expect(openSubscriptions()).toBe(0)
  })

  it("frees the subscription when the consumer breaks out", async () => {
    const { client, openSubscriptions } = await make({ worker: false })
    const { run } = await client.createRun({ input: null }, { idempotencyKey: "a" })
    for await (const e of client.streamEvents(run.id)) {
      expect(e.seq).toBe(1)
      expect(openSubscriptions()).toBe(1)
      break
    }
    expect(openSubscriptions()).toBe(0)
  })

  it("yields nothing for an already aborted signal", async () => {
    const { client, openSubscriptions } = await make({ worker: false })
    const { run } = await client.createRun({ input: null }, { idempotencyKey: "a" })
    expect(await collect(client.streamEvents(run.id, { signal: AbortSignal.abort() }))).toEqual([])
    expect(openSubscriptions()).toBe(0)
  })

  it("rejects with an ApiError for a run it cannot see", async () => {
    const { client } = await make({ worker: false })
    const error = await rejection(collect(client.streamEvents("run_01ARZ3NDEKTSV4RRFFQ69G5FAV")))
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ status: 404, reason_code: "RUN_NOT_FOUND" })
    const bad = await rejection(
      collect(client.streamEvents("run_01ARZ3NDEKTSV4RRFFQ69G5FAV", { afterSeq: -1 }))
    )
    expect(bad).toMatchObject({ status: 400, reason_code: "VALIDATION_FAILED" })
  })
})

describe("signal and cancel", () => {
  it("answers a wait, then the run succeeds; a second answer is refused once terminal", async () => {
    const { client } = await make()
    const { run } = await client.createRun({ input: null, handler: "approval" }, { idempotencyKey: "a" })
    const types: string[] = []
    for await (const e of client.streamEvents(run.id)) {
      types.push(e.type)
      if (e.type === "run.awaiting_input") {
        const answered = await client.signalRun(run.id, { action: "approve", comment: "ok" })
        expect(answered.status).toBe("queued")
      }
    }
    expect(types.at(-1)).toBe("run.worker.succeeded")
    expect(await client.getRun(run.id)).toMatchObject({ status: "succeeded", output: { approved: true } })
    const late = await rejection(client.signalRun(run.id, { action: "reject" }))
    expect(late).toMatchObject({ status: 409, reason_code: "RUN_ALREADY_TERMINAL" })
  })

  it("cancels a queued run", async () => {
    const { client } = await make({ worker: false })
    const { run } = await client.createRun({ input: null }, { idempotencyKey: "a" })
    const cancelled = await client.cancelRun(run.id, { reason: "changed my mind" })
    expect(cancelled).toMatchObject({ status: "cancelled", error: { reason_code: "RUN_CANCELLED" } })
    expect(await client.cancelRun(run.id)).toMatchObject({ status: "cancelled" })
    const events = await collect(client.streamEvents(run.id))
    expect(events.map((e) => [e.seq, e.type])).toEqual([
      [1, "run.queued"],
      [2, "run.cancelled"]
    ])
  })
})

describe("reads", () => {
  it("lists with filters and cursor pagination", async () => {
    const { client } = await make({ worker: false })
    const a = await client.createRun({ input: 1, metadata: { team: "core", n: 1 } }, { idempotencyKey: "a" })
    const b = await client.createRun({ input: 2, metadata: { team: "core", n: 2 } }, { idempotencyKey: "b" })
    await client.createRun({ input: 3, metadata: { team: "web" } }, { idempotencyKey: "c" })
    await client.cancelRun(a.run.id)
    const first = await client.listRuns({ metadata: { team: "core" }, limit: 1 })
    expect(first.data.map((r) => r.id)).toEqual([b.run.id])
    expect(first.has_more).toBe(true)
    const second = await client.listRuns({ metadata: { team: "core" }, limit: 1, cursor: first.next_cursor! })
    expect(second).toMatchObject({ has_more: false, next_cursor: null })
    expect(second.data.map((r) => r.id)).toEqual([a.run.id])
    const cancelled = await client.listRuns({ status: ["cancelled"] })
    expect(cancelled.data.map((r) => r.id)).toEqual([a.run.id])
    expect((await client.listRuns({ metadata: { n: 2 } })).data.map((r) => r.id)).toEqual([b.run.id])
    expect((await client.listRuns()).data).toHaveLength(3)
  })

  it("rejects with the SPEC §4 status and reason code", async () => {
    const { client, engine } = await make({ worker: false })
    const { run } = await client.createRun({ input: 1 }, { idempotencyKey: "a" })
    const reader = createInProcessClient(engine, { ...LOCAL_PRINCIPAL, scopes: ["runs:read"] })
    const stranger = createInProcessClient(engine, { ...LOCAL_PRINCIPAL, customerId: "someone-else" })
    const cases: ReadonlyArray<[Promise<unknown>, number, string]> = [
      [client.getRun("run_01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404, "RUN_NOT_FOUND"],
      [stranger.getRun(run.id), 404, "RUN_NOT_FOUND"],
      [
        client.createRun({ input: 1, handler: "elsewhere" }, { idempotencyKey: "b" }),
        422,
        "HANDLER_NOT_FOUND"
      ],
      [client.listRuns({ limit: 1000 }), 400, "VALIDATION_FAILED"],
      [client.readEvents(run.id, { after_seq: -1 }), 400, "VALIDATION_FAILED"],
      [client.signalRun(run.id, { action: "approve" }), 409, "RUN_NOT_AWAITING_INPUT"],
      [reader.createRun({ input: 1 }, { idempotencyKey: "c" }), 403, "AUTH_SCOPE_DENIED"],
      [reader.listApiKeys(), 403, "AUTH_SCOPE_DENIED"],
      [client.revokeApiKey("key_unknown123"), 404, "KEY_NOT_FOUND"]
    ]
    for (const [promise, status, reasonCode] of cases) {
      const error = await rejection(promise)
      expect(error, reasonCode).toBeInstanceOf(ApiError)
      expect(error, reasonCode).toMatchObject({ status, reason_code: reasonCode, request_id: null })
    }
    const invalid = await rejection(
      client.createRun({ input: 1, handler: "elsewhere" }, { idempotencyKey: "b" })
    )
    expect(invalid).toMatchObject({ details: [{ path: "handler", message: "is not a registered handler" }] })
    const notFound = await rejection(client.getRun("run_01ARZ3NDEKTSV4RRFFQ69G5FAV"))
    expect(notFound).toMatchObject({ message: "No run with this id.", details: undefined })
  })
})

describe("API keys", () => {
  it("creates, lists and revokes; a key's principal sees its own customer only", async () => {
    const { client, engine } = await make({ worker: false })
    const created = await client.createApiKey({ scopes: ["runs:read", "runs:write"], name: "ci" })
    expect(created).toMatchObject({ name: "ci", customer_id: "default", revoked_at: null })
    expect(created.key.startsWith(`${created.key_id}:`)).toBe(true)
    expect((await client.listApiKeys()).map((k) => k.key_id)).toEqual([created.key_id])
    const other = await client.createApiKey({ scopes: ["runs:read", "runs:write"], customer_id: "acme" })
    const acme: Principal = await engine.verifyKey(other.key)
    const acmeClient = createInProcessClient(engine, acme)
    await client.createRun({ input: 1 }, { idempotencyKey: "a" })
    expect((await acmeClient.listRuns()).data).toEqual([])
    expect(await client.revokeApiKey(created.key_id)).toBeUndefined()
    const [listed] = await client.listApiKeys()
    expect(listed).toMatchObject({ key_id: created.key_id, revoked_at: expect.any(String) })
    expect(listed).not.toHaveProperty("key")
    await expect(engine.verifyKey(created.key)).rejects.toMatchObject({ reason_code: "AUTH_KEY_INVALID" })
  })
})

describe("toApiError", () => {
  it("keeps retry_after for STORAGE_UNAVAILABLE in whole seconds, as the server sends it", () => {
    const error = toApiError(
      new StorageError({ reason_code: "STORAGE_UNAVAILABLE", message: "down", retry_after_ms: 1500 })
    )
    expect(error).toMatchObject({
      status: 503,
      reason_code: "STORAGE_UNAVAILABLE",
      message: "down",
      retry_after: 2
    })
    expect(
      toApiError(new StorageError({ reason_code: "STORAGE_UNAVAILABLE", message: "x", retry_after_ms: 0 }))
    ).toMatchObject({ retry_after: 1 })
  })

  it("maps every other tagged error by httpStatusOf, and the rest to 500 INTERNAL", () => {
    expect(toApiError(new TransitionRejected({ reason_code: "LEASE_LOST", message: "lost" }))).toMatchObject({
      status: 409,
      reason_code: "LEASE_LOST"
    })
    const internal = toApiError(new InternalError({ reason_code: "INTERNAL", message: "Internal error." }))
    expect(internal).toMatchObject({ status: 500, reason_code: "INTERNAL", message: "Internal error." })
    const defect = new Error("SELECT * FROM secrets")
    const mapped = toApiError(defect)
    expect(mapped).toMatchObject({ status: 500, reason_code: "INTERNAL", message: "Internal error." })
    expect(mapped.cause).toBe(defect)
    const already = new ApiError(418, "TEAPOT", "short and stout")
    expect(toApiError(already)).toBe(already)
  })

  it("turns a failing store into 503 on every call", async () => {
    const store = makeMemoryStore()
    const failing = {
      ...store.runStore,
      get: () => Effect.fail(storageUnavailable("The store is unreachable.", 250))
    }
    const engine = createEngine({ storage: memoryStorage({ ...store, runStore: failing }), handlers })
    engines.push(engine)
    const error = await rejection(createInProcessClient(engine).getRun("run_01ARZ3NDEKTSV4RRFFQ69G5FAV"))
    expect(error).toMatchObject({ status: 503, reason_code: "STORAGE_UNAVAILABLE", retry_after: 1 })
  })
})
