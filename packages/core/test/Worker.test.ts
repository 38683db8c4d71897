/**
 * The worker over the memory adapter, end to end through the Promise API.
 * (The conformance suite repeats the durable-execution cases on every adapter.)
 */
import { memoryStorage } from "@baton/adapter-memory"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { type BatonEngine, createEngine } from "../src/Container.js"
import { storageUnavailable } from "../src/Errors.js"
import type { Handler } from "../src/RunContext.js"

const engines: BatonEngine[] = []
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose({ graceMs: 0 })))
})

const start = async (handlers: Record<string, Handler>) => {
  const engine = createEngine({ storage: memoryStorage(), handlers })
  engines.push(engine)
  await engine.startWorker({
    pollIntervalMs: 5,
    heartbeatMs: 50,
    leaseMs: 2000,
    retry: { initialDelayMs: 1 }
  })
  return engine
}

/** Waits until the run satisfies `predicate` (polling, with a deadline). */
const until = async (engine: BatonEngine, runId: string, predicate: (status: string) => boolean) => {
  const deadline = Date.now() + 5000
  for (;;) {
    const run = await engine.getRun(runId)
    if (predicate(run.status)) return run
    if (Date.now() > deadline) throw new Error(`run ${runId} stayed ${run.status}`)
    await new Promise((r) => setImmediate(r))
  }
}

const createdId = async (engine: BatonEngine, body: unknown) => {
  const created = await engine.createRun(body)
  if (created._tag === "KeyReused") throw new Error("unexpected")
  return created.run.id
}

describe("worker", () => {
  it("executes steps, streams progress and succeeds with the handler's output", async () => {
    let calls = 0
    const engine = await start({
      default: async (run) => {
        const a = await run.step("double", () => {
          calls++
          return (run.input as number) * 2
        })
        await run.step("stream", (step) => {
          for (const t of ["a", "b", "c"]) step.progress({ content_delta: t })
        })
        return { a }
      }
    })
    const id = await createdId(engine, { input: 21 })
    const run = await until(engine, id, (s) => s === "succeeded")
    expect(run.output).toEqual({ a: 42 })
    expect(calls).toBe(1)
    const events = (await engine.readEvents(id, { limit: 1000 })).data
    expect(events.map((e) => e.type)).toEqual([
      "run.queued",
      "run.started",
      "step.started",
      "step.done",
      "step.started",
      "step.progress",
      "step.progress",
      "step.progress",
      "step.done",
      "run.worker.succeeded"
    ])
    expect(events.filter((e) => e.type === "step.progress").map((e) => e.payload.value)).toEqual([
      { content_delta: "a", step_id: "stream:0", kind: "content_delta" },
      { content_delta: "b", step_id: "stream:0", kind: "content_delta" },
      { content_delta: "c", step_id: "stream:0", kind: "content_delta" }
    ])
  })

  it("suspends on awaitInput, resumes on a signal without re-running finished steps", async () => {
    const calls: string[] = []
    const engine = await start({
      default: async (run) => {
        await run.step("before", () => void calls.push("before"))
        const decision = await run.awaitInput({ prompt: "ok?", actions: ["approve", "reject"] })
        await run.step("after", () => void calls.push("after"))
        return decision.action
      }
    })
    const id = await createdId(engine, { input: null })
    await until(engine, id, (s) => s === "awaiting_input")
    await engine.signalRun(id, { action: "approve", comment: "fine" })
    const run = await until(engine, id, (s) => s === "succeeded")
    expect(run.output).toBe("approve")
    expect(calls).toEqual(["before", "after"])
  })

  it("retries a failing step, then fails the run when attempts run out", async () => {
    let calls = 0
    const engine = await start({
      default: async (run) =>
        run.step("flaky", () => {
          calls++
          throw new Error(`boom ${calls}`)
        })
    })
    const id = await createdId(engine, { input: null, limits: { max_step_attempts: 3 } })
    const run = await until(engine, id, (s) => s === "failed")
    expect(run.error?.reason_code).toBe("STEP_RETRIES_EXHAUSTED")
    expect(calls).toBe(3)
  })

  it("fails a run whose handler takes another path on replay: non-determinism, HANDLER_ERROR", async () => {
    let firstPath = true
    const engine = await start({
      default: async (run) => {
        // The first execution runs "a"; after the wait, a changed world makes it run "b" first.
        await run.step(firstPath ? "a" : "b", () => 1)
        await run.awaitInput({ prompt: "go?", actions: ["approve"] })
        return "done"
      }
    })
    const id = await createdId(engine, { input: null })
    await until(engine, id, (s) => s === "awaiting_input")
    firstPath = false
    await engine.signalRun(id, { action: "approve" })
    const run = await until(engine, id, (s) => s === "failed")
    expect(run.error).toMatchObject({ reason_code: "HANDLER_ERROR" })
    expect(run.error?.message).toContain("Non-determinism")
  })
})

describe("worker reads", () => {
  it("starts a first attempt without reading its log, and replays a resumed run from its log", async () => {
    const storage = memoryStorage()
    const reads: string[] = []
    const { runStore } = storage.store
    const counted = {
      ...storage,
      layer: memoryStorage({
        ...storage.store,
        runStore: {
          ...runStore,
          readEvents: (runId, after, limit) => {
            reads.push(runId)
            return runStore.readEvents(runId, after, limit)
          }
        }
      }).layer
    }
    const calls: string[] = []
    const engine = createEngine({
      storage: counted,
      handlers: {
        default: async (run) => {
          await run.step("before", () => void calls.push("before"))
          const decision = await run.awaitInput({ prompt: "ok?", actions: ["approve"] })
          return decision.action
        }
      }
    })
    engines.push(engine)
    await engine.startWorker({ pollIntervalMs: 5 })
    const id = await createdId(engine, { input: null })
    await until(engine, id, (s) => s === "awaiting_input")
    expect(reads).toEqual([])
    await engine.signalRun(id, { action: "approve" })
    const run = await until(engine, id, (s) => s === "succeeded")
    expect(run.output).toBe("approve")
    // The second execution read the log: the finished step was replayed, not run again.
    expect(reads).toContain(id)
    expect(calls).toEqual(["before"])
  })
})

describe("worker writes", () => {
  /** An engine whose store records the event types of every append it is asked for. */
  const counting = (handlers: Record<string, Handler>) => {
    const storage = memoryStorage()
    const appends: string[][] = []
    const { runStore } = storage.store
    const counted = {
      ...storage,
      layer: memoryStorage({
        ...storage.store,
        runStore: {
          ...runStore,
          append: (runId, expect, events, patch) => {
            appends.push(events.map((e) => e.type))
            return runStore.append(runId, expect, events, patch)
          }
        }
      }).layer
    }
    const engine = createEngine({ storage: counted, handlers })
    engines.push(engine)
    return { engine, appends }
  }

  it("writes a step's end with the next write: the next step's start, then the run's end", async () => {
    const { engine, appends } = counting({
      default: async (run) => {
        const a = await run.step("a", () => ({ n: 1 }))
        const b = await run.step("b", () => a.n + 1)
        return b
      }
    })
    await engine.startWorker({ pollIntervalMs: 5, progressFlushMs: 1000 })
    const id = await createdId(engine, { input: null })
    const run = await until(engine, id, (s) => s === "succeeded")
    expect(run.output).toBe(2)
    expect(appends).toEqual([
      ["step.started"],
      ["step.done", "step.started"],
      ["step.done", "run.worker.succeeded"]
    ])
    const events = (await engine.readEvents(id, { limit: 1000 })).data
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
  })

  it("writes a held step end on its own after the flush window when nothing follows it", async () => {
    let release: () => void = () => {}
    const { engine, appends } = counting({
      default: async (run) => {
        await run.step("a", (step) => {
          step.progress({ content_delta: "x" })
          return "out"
        })
        await new Promise<void>((r) => {
          release = r
        })
        return "end"
      }
    })
    await engine.startWorker({ pollIntervalMs: 5, progressFlushMs: 20 })
    const id = await createdId(engine, { input: null })
    const deadline = Date.now() + 5000
    while (appends.length < 2) {
      if (Date.now() > deadline) throw new Error(`appends: ${JSON.stringify(appends)}`)
      await new Promise((r) => setTimeout(r, 5))
    }
    // The step's progress goes before its end, in the same append.
    expect(appends).toEqual([["step.started"], ["step.progress", "step.done"]])
    expect((await engine.getRun(id)).status).toBe("running")
    release()
    await until(engine, id, (s) => s === "succeeded")
    expect(appends[2]).toEqual(["run.worker.succeeded"])
  })

  it("ends a run cancelled when a step returns after a cancel request, step end and cancel in one append", async () => {
    let cancel: () => Promise<unknown> = async () => {}
    const { engine, appends } = counting({
      default: async (run) => {
        await run.step("a", async (step) => {
          await cancel()
          // The heartbeat tells the worker about the cancel before the step returns.
          if (!step.signal.aborted)
            await new Promise((resolve) => step.signal.addEventListener("abort", resolve, { once: true }))
          return 1
        })
        return "not reached"
      }
    })
    await engine.startWorker({ pollIntervalMs: 5, heartbeatMs: 5, progressFlushMs: 1000 })
    const id = await createdId(engine, { input: null })
    cancel = async () => {
      await engine.cancelRun(id, {})
    }
    const run = await until(engine, id, (s) => s === "cancelled")
    expect(run.status).toBe("cancelled")
    expect(appends.at(-1)).toEqual(["step.done", "run.cancelled"])
  })
})

describe("worker against a store that is away", () => {
  it("backs off its claims while they fail, and claims again once the store answers", async () => {
    const storage = memoryStorage()
    let failing = true
    const attempts: number[] = []
    const { runStore } = storage.store
    const claim = runStore.claim
    // The store's claims fail while `failing`: the same driver, its claim wrapped.
    const flaky = {
      ...storage,
      layer: memoryStorage({
        ...storage.store,
        runStore: {
          ...runStore,
          claim: (req) => {
            attempts.push(Date.now())
            return failing ? Effect.fail(storageUnavailable("away")) : claim(req)
          }
        }
      }).layer
    }
    const engine = createEngine({ storage: flaky, handlers: { default: async () => "done" } })
    engines.push(engine)
    await engine.startWorker({ pollIntervalMs: 5 })
    const deadline = Date.now() + 10_000
    while (attempts.length < 5) {
      if (Date.now() > deadline) throw new Error(`only ${attempts.length} claim attempts`)
      await new Promise((r) => setTimeout(r, 5))
    }
    // Polling every 5 ms, the 5th attempt would follow the 4th by ~5 ms; doubling makes it at least
    // 5 × 2⁴ = 80 ms. Only a lower bound: a slow machine lengthens pauses, never shortens them.
    expect(attempts[4]! - attempts[3]!).toBeGreaterThanOrEqual(40)
    failing = false
    const id = await createdId(engine, { input: 1 })
    const run = await until(engine, id, (s) => s === "succeeded")
    expect(run.output).toBe("done")
  })
})
