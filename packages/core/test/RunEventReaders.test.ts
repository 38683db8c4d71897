/**
 * The shared reader behind `Engine.subscribe`: many subscribers of one run
 * cost one store read per hint, each still gets every event after its seq
 * once, in order, up to the terminal event; the reader lives exactly as long
 * as the run has subscribers. Over the memory adapter on the TestClock, so
 * only feed hints (never a poll tick) wake the reader unless a test moves time.
 */
import { type MemoryStore, makeMemoryStore, memoryStorage } from "@baton/adapter-memory"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Stream, TestClock } from "effect"
import * as fc from "fast-check"
import { ALL_SCOPES, type Principal } from "../src/ApiKey.js"
import { createEngine } from "../src/Container.js"
import * as Engine from "../src/Engine.js"
import { EngineConfig } from "../src/EngineConfig.js"
import type { Run } from "../src/Run.js"
import { isTerminalEventType } from "../src/RunEvent.js"
import { RunEventReaders, SHARED_WINDOW_EVENTS } from "../src/RunEventReaders.js"
import { RunCommand } from "../src/RunState.js"

const ACME: Principal = { customerId: "acme", keyId: null, scopes: ALL_SCOPES }

/** A memory store that counts log reads and open feed subscriptions. */
const countingStore = () => {
  const inner = makeMemoryStore()
  const counts = { reads: 0, feeds: 0 }
  const store: MemoryStore = {
    ...inner,
    runStore: {
      ...inner.runStore,
      readEvents: (runId, after, limit) => {
        counts.reads++
        return inner.runStore.readEvents(runId, after, limit)
      }
    },
    eventFeed: {
      subscribe: (runId) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            counts.feeds++
          }),
          () =>
            Effect.sync(() => {
              counts.feeds--
            })
        ).pipe(Effect.zipRight(inner.eventFeed.subscribe(runId)))
    }
  }
  const layer = RunEventReaders.layer.pipe(
    Layer.provideMerge(
      Layer.merge(memoryStorage(store).layer, EngineConfig.layer({ handlers: new Set(["default"]) }))
    )
  )
  return { counts, layer, store }
}

/** Lets every forked fiber run until it waits. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow()
})

/** A run claimed and inside a step, ready for progress events (seq 3 is step.started). */
const runInStep = Effect.gen(function* () {
  const created = yield* Engine.createRun(ACME, { input: null })
  if (created._tag !== "Created") return yield* Effect.dieMessage("not created")
  const [claimed] = yield* Engine.claimRuns("w1", { leaseMs: 60_000, max: 1 })
  const leaseToken = claimed!.lease_token!
  yield* Engine.applyCommand(
    created.run.id,
    RunCommand.StartStep({ leaseToken, stepId: "s1", name: "s1", attempt: 1 }),
    { leaseToken }
  )
  const append = (count: number) =>
    Engine.applyCommand(
      created.run.id,
      RunCommand.Progress({
        leaseToken,
        items: Array.from({ length: count }, (_, i) => ({
          stepId: "s1",
          kind: "content_delta",
          fields: { content_delta: String(i) }
        }))
      }),
      { leaseToken }
    )
  const finish = Effect.zipRight(
    Engine.applyCommand(
      created.run.id,
      RunCommand.FinishStep({ leaseToken, stepId: "s1", outcome: "succeeded" }),
      {
        leaseToken
      }
    ),
    Engine.applyCommand(created.run.id, RunCommand.Succeed({ leaseToken, output: null }), { leaseToken })
  )
  return { run: created.run as Run, append, finish }
})

/** A subscriber collecting seqs into `seen` as they arrive; join its fiber for the end. */
const follow = (run: Run, afterSeq: number) =>
  Effect.gen(function* () {
    const seen: number[] = []
    const types: string[] = []
    const stream = yield* Engine.subscribe(ACME, run.id, afterSeq)
    const fiber = yield* Effect.fork(
      Stream.runForEach(stream, (e) =>
        Effect.sync(() => {
          seen.push(e.seq)
          types.push(e.type)
        })
      )
    )
    return { afterSeq, seen, types, fiber }
  })

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i)

const lastSeq = (run: Run) => Effect.map(Engine.getRun(ACME, run.id), (r) => r.last_seq)

describe("RunEventReaders", () => {
  it.effect(
    "subscribers joining at different seqs each get every later event once, in order, to the end",
    () => {
      const { layer } = countingStore()
      return Effect.gen(function* () {
        const { run, append, finish } = yield* runInStep
        const subscribers = [yield* follow(run, 0), yield* follow(run, 2)]
        yield* append(5)
        yield* settle
        subscribers.push(yield* follow(run, 4), yield* follow(run, yield* lastSeq(run)))
        yield* append(3)
        yield* settle
        subscribers.push(yield* follow(run, 1))
        yield* append(1)
        subscribers.push(yield* follow(run, (yield* lastSeq(run)) - 1))
        yield* finish
        const last = yield* lastSeq(run)
        for (const s of subscribers) {
          yield* Fiber.join(s.fiber)
          expect(s.seen, `joined after ${s.afterSeq}`).toEqual(range(s.afterSeq + 1, last))
          expect(isTerminalEventType(s.types.at(-1)!)).toBe(true)
        }
      }).pipe(Effect.provide(layer))
    }
  )

  it.effect("reads the store once per hint, not once per subscriber, and opens one feed subscription", () => {
    const { counts, layer } = countingStore()
    return Effect.gen(function* () {
      const { run, append, finish } = yield* runInStep
      const subscribers = yield* Effect.forEach(range(1, 50), () => follow(run, 3))
      yield* settle
      expect(counts.feeds).toBe(1)
      for (let hint = 1; hint <= 3; hint++) {
        const before = counts.reads
        yield* append(1)
        yield* settle
        expect(counts.reads - before, `reads for hint ${hint}`).toBe(1)
        for (const s of subscribers) expect(s.seen).toEqual(range(4, 3 + hint))
      }
      yield* finish
      yield* Effect.forEach(subscribers, (s) => Fiber.join(s.fiber))
    }).pipe(Effect.provide(layer))
  })

  it.effect("a late joiner after many events reads its gap from the store, then shares the live tail", () => {
    const { counts, layer } = countingStore()
    return Effect.gen(function* () {
      const { run, append, finish } = yield* runInStep
      const early = yield* follow(run, 0)
      // More than the shared window and more than one store page.
      for (let i = 0; i < 6; i++) yield* append(200)
      yield* settle
      const last = yield* lastSeq(run)
      expect(early.seen).toEqual(range(1, last))

      const before = counts.reads
      const nearTail = yield* follow(run, last - 10)
      yield* settle
      // Served from the shared window: no read of its own.
      expect(counts.reads).toBe(before)
      expect(nearTail.seen).toEqual(range(last - 9, last))

      const late = yield* follow(run, 0)
      yield* settle
      expect(late.seen).toEqual(range(1, last))
      expect(counts.reads - before).toBeGreaterThanOrEqual(Math.ceil((last - SHARED_WINDOW_EVENTS) / 500))

      yield* append(2)
      yield* finish
      const end = yield* lastSeq(run)
      for (const s of [early, nearTail, late]) {
        yield* Fiber.join(s.fiber)
        expect(s.seen).toEqual(range(s.afterSeq + 1, end))
      }
    }).pipe(Effect.provide(layer))
  })

  it.effect("a subscriber that falls behind the window catches up from the store", () => {
    const { layer } = countingStore()
    return Effect.gen(function* () {
      const { run, append, finish } = yield* runInStep
      const gate = yield* Deferred.make<void>()
      const seen: number[] = []
      const stream = yield* Engine.subscribe(ACME, run.id, 3)
      // Takes its first event, then stops pulling until the gate opens.
      const slow = yield* Effect.fork(
        Stream.runForEach(stream, (e) =>
          Effect.zipRight(
            Effect.sync(() => seen.push(e.seq)),
            seen.length === 0 ? Deferred.await(gate) : Effect.void
          )
        )
      )
      yield* append(1)
      yield* settle
      yield* append(SHARED_WINDOW_EVENTS * 2)
      yield* finish
      yield* settle
      yield* Deferred.succeed(gate, undefined)
      yield* Fiber.join(slow)
      expect(seen).toEqual(range(4, yield* lastSeq(run)))
    }).pipe(Effect.provide(layer))
  })

  it.effect("stops the reader when the last subscriber leaves, and starts one for the next", () => {
    const { counts, layer } = countingStore()
    return Effect.gen(function* () {
      const { run, append, finish } = yield* runInStep
      const subscribers = yield* Effect.forEach(range(1, 5), () => follow(run, 0))
      yield* settle
      expect(counts.feeds).toBe(1)
      yield* Fiber.interrupt(subscribers[0]!.fiber)
      expect(counts.feeds).toBe(1)
      yield* Effect.forEach(subscribers.slice(1), (s) => Fiber.interrupt(s.fiber))
      expect(counts.feeds).toBe(0)
      // Nothing reads for a run nobody follows, even when time passes.
      const before = counts.reads
      yield* append(1)
      yield* TestClock.adjust("5 seconds")
      expect(counts.reads).toBe(before)

      const next = yield* follow(run, 0)
      yield* settle
      expect(counts.feeds).toBe(1)
      yield* finish
      yield* Fiber.join(next.fiber)
      expect(next.seen).toEqual(range(1, yield* lastSeq(run)))
      expect(counts.feeds).toBe(0)
    }).pipe(Effect.provide(layer))
  })

  it.effect("the terminal event ends every subscriber's stream and leaves no reader behind", () => {
    const { counts, layer } = countingStore()
    return Effect.gen(function* () {
      const { run, append, finish } = yield* runInStep
      const subscribers = yield* Effect.forEach(range(0, 3), (after) => follow(run, after))
      yield* append(1)
      yield* finish
      yield* TestClock.adjust("1 second")
      const last = yield* lastSeq(run)
      for (const s of subscribers) {
        yield* Fiber.join(s.fiber)
        expect(s.seen).toEqual(range(s.afterSeq + 1, last))
      }
      expect(counts.feeds).toBe(0)
    }).pipe(Effect.provide(layer))
  })

  it("property: any join points and append sizes give gapless, duplicate-free streams", async () => {
    const step = fc.oneof(
      fc.record({ op: fc.constant("append" as const), count: fc.integer({ min: 1, max: 300 }) }),
      // Where to join, as a fraction of the events so far; `settle` lets the reader catch up first.
      fc.record({ op: fc.constant("join" as const), at: fc.double({ min: 0, max: 1, noNaN: true }) }),
      fc.record({ op: fc.constant("settle" as const) })
    )
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        const { counts, layer } = countingStore()
        await Effect.runPromise(
          Effect.gen(function* () {
            const { run, append, finish } = yield* runInStep
            const subscribers = [yield* follow(run, 0)]
            for (const s of steps) {
              if (s.op === "append") yield* append(s.count)
              else if (s.op === "settle") yield* settle
              else subscribers.push(yield* follow(run, Math.floor(s.at * (yield* lastSeq(run)))))
            }
            yield* finish
            const last = yield* lastSeq(run)
            for (const s of subscribers) {
              yield* Fiber.join(s.fiber)
              expect(s.seen).toEqual(range(s.afterSeq + 1, last))
            }
          }).pipe(Effect.provide(layer))
        )
        expect(counts.feeds).toBe(0)
      }),
      { numRuns: 40 }
    )
  })
})

describe("engine.subscribe (the Promise API) over the shared reader", () => {
  const eventually = async (check: () => boolean, what: string) => {
    for (let i = 0; i < 200 && !check(); i++) await new Promise((resolve) => setTimeout(resolve, 10))
    expect(check(), what).toBe(true)
  }

  it("gives iterators joining at different seqs gapless streams, one store read per hint, and releases the reader", async () => {
    const { counts, store } = countingStore()
    const engine = createEngine({
      storage: memoryStorage(store),
      config: { handlers: new Set(["default"]), feedPollIntervalMs: 60_000 }
    })
    try {
      const { run, append, finish } = await engine.run(runInStep)
      const readers = await Promise.all(
        range(0, 29).map(async (i) => {
          const afterSeq = i % 4
          const seen: number[] = []
          const events = await engine.subscribe(run.id, { afterSeq, principal: ACME })
          const done = (async () => {
            for await (const e of events) seen.push(e.seq)
          })()
          return { afterSeq, seen, done }
        })
      )
      await eventually(() => readers.every((r) => r.seen.at(-1) === 3 || r.afterSeq === 3), "the backlog")
      expect(counts.feeds).toBe(1)
      const before = counts.reads
      await engine.run(append(1))
      await eventually(() => readers.every((r) => r.seen.at(-1) === 4), "the live event")
      expect(counts.reads - before).toBe(1)
      await engine.run(finish)
      await Promise.all(readers.map((r) => r.done))
      const last = (await engine.getRun(run.id, ACME)).last_seq
      for (const r of readers) expect(r.seen).toEqual(range(r.afterSeq + 1, last))
      await eventually(() => counts.feeds === 0, "the reader to stop")
    } finally {
      await engine.dispose()
    }
  })

  it("lets go of the reader when every iterator returns early", async () => {
    const engine = createEngine({ storage: memoryStorage(), config: { handlers: new Set(["default"]) } })
    try {
      const { run } = await engine.run(runInStep)
      const iterators = await Promise.all(
        range(1, 3).map(async () =>
          (await engine.subscribe(run.id, { afterSeq: 3, principal: ACME }))[Symbol.asyncIterator]()
        )
      )
      const pending = iterators.map((it) => it.next())
      await Promise.all(iterators.map((it) => it.return?.()))
      for (const p of pending) expect(await p).toEqual({ done: true, value: undefined })
    } finally {
      await engine.dispose()
    }
  })
})
