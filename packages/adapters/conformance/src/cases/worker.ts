/**
 * The durable worker runtime over this adapter: crashes, retries, waits,
 * cancels, limits, fencing, progress, concurrency. Every case drives real
 * workers (`Worker.startWorker`) with short timings and waits for conditions,
 * never for a fixed time.
 */
import { Engine, FatalError, type JsonValue, type Worker } from "@baton/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { type Capabilities, type Harness, newHandler, newPrincipal } from "../Harness.js"
import { createRun, expectGapless, getRecord, readAll, withReason } from "./helpers.js"
import {
  contentOf,
  getRun,
  ofStep,
  ofType,
  payloadOf,
  typesOf,
  untilAborted,
  waitFor,
  waitForPrompt,
  waitForStatus,
  waitForTerminal,
  withScene
} from "./workerSupport.js"

/** A handler as a worker takes it. */
type H = Worker.WorkerOptions["handlers"][string]

/** The reason code of a failed engine call, or "ok". */
const outcomeOf = async (h: Harness, effect: Parameters<Harness["either"]>[0]): Promise<string> => {
  const result = await h.either(effect)
  if (result._tag === "Right") return "ok"
  const error = result.left as { reason_code?: string }
  return error.reason_code ?? "no reason_code"
}

export const workerCases = (h: () => Harness, caps: Capabilities) =>
  describe("worker runtime", () => {
    // -----------------------------------------------------------------------
    // a) crash and resume
    describe("crash recovery", () => {
      it("a worker killed mid-step: another worker finishes the run after lease expiry, finished steps run once", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          const calls = { a: 0, b: 0, c: 0 }
          const fn: H = async (run) => {
            const a = await run.step("a", () => {
              calls.a++
              return "A"
            })
            const b = await run.step("b", async () => {
              calls.b++
              if (calls.b === 1) await gate.promise
              return "B"
            })
            const c = await run.step("c", () => {
              calls.c++
              return "C"
            })
            return { a, b, c }
          }
          const first = await scene.start({ workerId: "crash-a", handlers: { [handler]: fn }, leaseMs: 600 })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "step b to start on worker A",
            () => calls.b,
            (n) => n === 1
          )
          const held = await getRecord(h(), run.id)
          await scene.crash(first)
          // The crash wrote nothing and let go of nothing: the run is still A's until the lease ends.
          const after = await getRecord(h(), run.id)
          expect(after.status).toBe("running")
          expect(after.worker_id).toBe("crash-a")
          expect(after.lease_token).toBe(held.lease_token)
          expect(after.last_seq).toBe(held.last_seq)
          expect(after.lease_expires_at!).toBeGreaterThan(Date.now())

          await scene.start({ workerId: "crash-b", handlers: { [handler]: fn }, leaseMs: 600 })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual({ a: "A", b: "B", c: "C" })
          // Finished steps ran once; only the step in flight at the crash ran again.
          expect(calls).toEqual({ a: 1, b: 2, c: 1 })

          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(events[0]!.type).toBe("run.queued")
          expect(events.at(-1)!.type).toBe("run.worker.succeeded")
          expect(payloadOf(events.at(-1)!)).toEqual({ output: { a: "A", b: "B", c: "C" } })
          expect(ofType(events, "run.requeued")).toEqual([{ reason: "lease_expired", attempt: 2 }])
          expect(ofType(events, "run.started")).toEqual([
            { attempt: 1, worker_id: "crash-a" },
            { attempt: 2, worker_id: "crash-b" }
          ])
          for (const id of ["a:0", "b:0", "c:0"])
            expect(ofStep(events, "step.done", id).map((v) => v.outcome)).toEqual(["succeeded"])
          expect(ofStep(events, "step.started", "a:0")).toHaveLength(1)
          expect(ofStep(events, "step.started", "b:0")).toHaveLength(2)
          expect(ofStep(events, "step.started", "c:0")).toHaveLength(1)
          // A's last write was step b's start; the takeover follows it, then B's start.
          const requeue = events.findIndex((e) => e.type === "run.requeued")
          expect(payloadOf(events[requeue - 1]!)).toMatchObject({ step_id: "b:0", attempt: 1 })
          expect(payloadOf(events[requeue + 1]!)).toEqual({ attempt: 2, worker_id: "crash-b" })
        }))
      it("stop() lets an in-flight run finish within graceMs, still holding its lease meanwhile", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let entered = 0
          let aborted = false
          const fn: H = async (run) => {
            const held = await run.step("held", async (step) => {
              entered++
              step.signal.addEventListener("abort", () => {
                aborted = true
              })
              await gate.promise
              return "finished"
            })
            return run.step("then", () => `${held} and more`)
          }
          const worker = await scene.start({ workerId: "grace", handlers: { [handler]: fn }, leaseMs: 600 })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "the held step to start",
            () => entered,
            (n) => n === 1
          )
          const before = (await getRecord(h(), run.id)).lease_expires_at!
          const stopping = scene.stop(worker, { graceMs: 5_000 })
          // Draining: the lease keeps being renewed and the handler is not aborted.
          await waitFor(
            "a lease renewal while the worker drains",
            () => getRecord(h(), run.id),
            (r) => r.lease_expires_at !== null && r.lease_expires_at > before
          )
          expect(aborted).toBe(false)
          gate.open()
          await stopping
          const done = await getRun(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toBe("finished and more")
          // A run that ended well is not "aborted" after the fact.
          expect(aborted).toBe(false)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.started")).toEqual([{ attempt: 1, worker_id: "grace" }])
          expect(ofType(events, "run.requeued")).toEqual([])
        }))

      it("a graceful stop lets go of an in-flight run at once: another worker resumes it without waiting for the lease", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          const calls = { before: 0, held: 0 }
          let aborted = false
          const fn: H = async (run) => {
            await run.step("before", () => {
              calls.before++
            })
            return run.step("held", async (step) => {
              calls.held++
              if (calls.held === 1) {
                step.signal.addEventListener("abort", () => {
                  aborted = true
                })
                await gate.promise
              }
              return "resumed"
            })
          }
          // A lease far longer than the case may wait: only a release lets B in.
          const first = await scene.start({
            workerId: "drain-a",
            handlers: { [handler]: fn },
            leaseMs: 60_000
          })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "the held step to start",
            () => calls.held,
            (n) => n === 1
          )
          await scene.stop(first, { graceMs: 50 })
          expect(aborted).toBe(true)
          const released = await getRecord(h(), run.id)
          expect(released.lease_expires_at!).toBeLessThanOrEqual(Date.now())
          await scene.start({ workerId: "drain-b", handlers: { [handler]: fn }, leaseMs: 60_000 })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toBe("resumed")
          expect(calls).toEqual({ before: 1, held: 2 })
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.started").map((v) => v.worker_id)).toEqual(["drain-a", "drain-b"])
          expect(ofType(events, "run.requeued")).toEqual([{ reason: "lease_expired", attempt: 2 }])
        }))

      it("a step whose every attempt dies with its worker fails the run STEP_RETRIES_EXHAUSTED (a poison step)", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let calls = 0
          const fn: H = async (run) => {
            await run.step("poison", async () => {
              calls++
              await gate.promise
            })
            return "unreachable"
          }
          const run = await createRun(h(), principal, handler, { limits: { max_step_attempts: 2 } })
          for (let i = 1; i <= 2; i++) {
            const worker = await scene.start({
              workerId: `poison-${i}`,
              handlers: { [handler]: fn },
              leaseMs: 300,
              concurrency: 1
            })
            await waitFor(
              `attempt ${i} of the step to start`,
              () => calls,
              (n) => n === i
            )
            await scene.crash(worker)
          }
          await scene.start({ workerId: "poison-3", handlers: { [handler]: fn }, leaseMs: 300 })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("failed")
          expect(done.error?.reason_code).toBe("STEP_RETRIES_EXHAUSTED")
          await scene.stopWorkers()
          expect(calls).toBe(2)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofStep(events, "step.started", "poison:0").map((v) => v.attempt)).toEqual([1, 2])
          expect(ofType(events, "run.started").map((v) => v.worker_id)).toEqual([
            "poison-1",
            "poison-2",
            "poison-3"
          ])
          expect(events.at(-1)!.type).toBe("run.worker.failed")
        }))
    })

    // -----------------------------------------------------------------------
    // b) retries and failures
    describe("retries and failures", () => {
      it("retries a throwing step with backoff until it succeeds: retry_step, retry_step, succeeded", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let calls = 0
          const fn: H = (run) =>
            run.step("flaky", () => {
              calls++
              if (calls < 3) throw new Error(`boom ${calls}`)
              return "ok"
            })
          await scene.start({
            handlers: { [handler]: fn },
            retry: { initialDelayMs: 5, factor: 2, maxDelayMs: 1_000, jitter: 0 }
          })
          const run = await createRun(h(), principal, handler)
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toBe("ok")
          expect(calls).toBe(3)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofStep(events, "step.started", "flaky:0").map((v) => v.attempt)).toEqual([1, 2, 3])
          const dones = ofStep(events, "step.done", "flaky:0")
          expect(dones.map((v) => v.outcome)).toEqual(["retry_step", "retry_step", "succeeded"])
          expect(dones.map((v) => (v.error as { message?: string } | undefined)?.message)).toEqual([
            "boom 1",
            "boom 2",
            undefined
          ])
          // Exponential backoff without jitter: initialDelayMs, then × factor.
          expect(dones.slice(0, 2).map((v) => v.retry_in_ms)).toEqual([5, 10])
          expect(dones[2]!.output).toBe("ok")
          // Short backoffs are slept in place: the run never left the worker.
          expect(ofType(events, "run.requeued")).toEqual([])
          expect(done.usage.steps).toBe(1)
        }))

      it("fails the run STEP_RETRIES_EXHAUSTED once max_step_attempts is used up", () =>
        withScene(h, async ({ scene, runToEnd }) => {
          let calls = 0
          let after = 0
          const fn: H = async (run) => {
            await run.step("always", () => {
              calls++
              throw new Error("still broken")
            })
            after++
          }
          const { run, done } = await runToEnd(fn, { limits: { max_step_attempts: 2 } })
          expect(done.status).toBe("failed")
          expect(done.error?.reason_code).toBe("STEP_RETRIES_EXHAUSTED")
          expect(done.error?.message).toContain("still broken")
          await scene.stopWorkers()
          expect(calls).toBe(2)
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofStep(events, "step.started", "always:0").map((v) => v.attempt)).toEqual([1, 2])
          expect(ofStep(events, "step.done", "always:0").map((v) => v.outcome)).toEqual([
            "retry_step",
            "fail_run"
          ])
          expect(events.at(-1)!.type).toBe("run.worker.failed")
          expect(payloadOf(events.at(-1)!).reason_code).toBe("STEP_RETRIES_EXHAUSTED")
        }))

      it("fails the run STEP_FAILED on the first attempt when a step throws a FatalError", () =>
        withScene(h, async ({ scene, runToEnd }) => {
          let calls = 0
          let after = 0
          const fn: H = async (run) => {
            await run.step("validate", () => {
              calls++
              throw new FatalError("the input is unusable")
            })
            after++
          }
          const { run, done } = await runToEnd(fn)
          expect(done.status).toBe("failed")
          expect(done.error).toEqual({ reason_code: "STEP_FAILED", message: "the input is unusable" })
          await scene.stopWorkers()
          expect(calls).toBe(1)
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(typesOf(events)).toEqual([
            "run.queued",
            "run.started",
            "step.started",
            "step.done",
            "run.worker.failed"
          ])
          expect(payloadOf(events[3]!)).toMatchObject({
            step_id: "validate:0",
            outcome: "fail_run",
            error: { message: "the input is unusable" }
          })
        }))

      it("fails the run HANDLER_ERROR when the handler throws outside a step", () =>
        withScene(h, async ({ runToEnd }) => {
          const fn: H = async (run) => {
            await run.step("fine", () => 1)
            throw new Error("broken between steps")
          }
          const { run, done } = await runToEnd(fn)
          expect(done.status).toBe("failed")
          expect(done.error?.reason_code).toBe("HANDLER_ERROR")
          expect(done.error?.message).toContain("broken between steps")
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(typesOf(events)).toEqual([
            "run.queued",
            "run.started",
            "step.started",
            "step.done",
            "run.worker.failed"
          ])
          expect(ofStep(events, "step.done", "fine:0").map((v) => v.outcome)).toEqual(["succeeded"])
        }))

      it("releases a run for a long backoff (run.requeued retry, queued), then resumes it without re-running finished steps", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const calls = { first: 0, flaky: 0, last: 0 }
          const fn: H = async (run) => {
            const first = await run.step("first", () => {
              calls.first++
              return 1
            })
            const flaky = await run.step("flaky", () => {
              calls.flaky++
              if (calls.flaky === 1) throw new Error("try later")
              return 2
            })
            const last = await run.step("last", () => {
              calls.last++
              return 3
            })
            return [first, flaky, last]
          }
          await scene.start({
            handlers: { [handler]: fn },
            retry: { initialDelayMs: 400, maxDelayMs: 400, jitter: 0, releaseAboveMs: 50 }
          })
          const run = await createRun(h(), principal, handler)
          const released = await waitForStatus(
            h(),
            principal,
            run.id,
            ["queued"],
            (r) => r.usage.attempts === 2
          )
          expect(released.usage.attempts).toBe(2)
          const record = await getRecord(h(), run.id)
          expect(record.lease_token).toBeNull()
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual([1, 2, 3])
          expect(calls).toEqual({ first: 1, flaky: 2, last: 1 })
          const events = await readAll(h(), run.id)
          expectGapless(events)
          const requeue = events.findIndex((e) => e.type === "run.requeued")
          expect(payloadOf(events[requeue]!)).toEqual({ reason: "retry", attempt: 2 })
          expect(payloadOf(events[requeue - 1]!)).toMatchObject({
            step_id: "flaky:0",
            outcome: "retry_step",
            retry_in_ms: 400
          })
          expect(events[requeue + 1]!.type).toBe("run.started")
          expect(payloadOf(events[requeue + 1]!)).toMatchObject({ attempt: 2 })
          // The run was not claimed again before its backoff was over.
          expect(events[requeue + 1]!.timestamp - events[requeue]!.timestamp).toBeGreaterThanOrEqual(400)
          expect(ofStep(events, "step.started", "first:0")).toHaveLength(1)
          expect(ofStep(events, "step.started", "flaky:0").map((v) => v.attempt)).toEqual([1, 2])
          expect(ofStep(events, "step.done", "flaky:0").map((v) => v.outcome)).toEqual([
            "retry_step",
            "succeeded"
          ])
          expect(events.at(-1)!.type).toBe("run.worker.succeeded")
        }))
    })

    // -----------------------------------------------------------------------
    // c) waiting for input
    describe("waits for input", () => {
      it("resumes two sequential waits once each; the steps around them run once", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const calls = { before: 0, middle: 0, after: 0 }
          const seen: unknown[] = []
          const fn: H = async (run) => {
            await run.step("before", () => {
              calls.before++
            })
            const first = await run.awaitInput({ prompt: "first?", actions: ["approve", "reject"] })
            await run.step("middle", () => {
              calls.middle++
              seen.push({ ...first })
            })
            const second = await run.awaitInput({
              prompt: "second?",
              actions: ["approve", "reject", "submit_input"]
            })
            await run.step("after", () => {
              calls.after++
              seen.push({ ...second })
            })
            return { first: first.action, second: second.action, input: second.input ?? null }
          }
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          await waitForPrompt(h(), principal, run.id, "first?")
          await h().run(Engine.signalRun(principal, run.id, { action: "reject", comment: "not yet" }))
          await waitForPrompt(h(), principal, run.id, "second?")
          await h().run(Engine.signalRun(principal, run.id, { action: "submit_input", input: { n: 7 } }))
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual({ first: "reject", second: "submit_input", input: { n: 7 } })
          expect(seen).toEqual([
            { action: "reject", comment: "not yet" },
            { action: "submit_input", input: { n: 7 } }
          ])
          expect(calls).toEqual({ before: 1, middle: 1, after: 1 })
          expect(done.usage.attempts).toBe(3)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.awaiting_input").map((v) => v.prompt)).toEqual(["first?", "second?"])
          expect(ofType(events, "run.signal_received").map((v) => v.action)).toEqual([
            "reject",
            "submit_input"
          ])
          expect(ofType(events, "run.requeued")).toEqual([
            { reason: "signal", attempt: 2 },
            { reason: "signal", attempt: 3 }
          ])
          expect(ofType(events, "run.started").map((v) => v.attempt)).toEqual([1, 2, 3])
          for (const id of ["before:0", "middle:0", "after:0"]) {
            expect(ofStep(events, "step.started", id)).toHaveLength(1)
            expect(ofStep(events, "step.done", id)).toHaveLength(1)
          }
          expect(events.at(-1)!.type).toBe("run.worker.succeeded")
        }))

      it("resumes a wait inside a loop once per iteration, in order", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let work = 0
          const recorded: JsonValue[] = []
          const fn: H = async (run) => {
            const inputs: JsonValue[] = []
            for (let i = 0; i < 3; i++) {
              await run.step("work", () => {
                work++
                return i
              })
              const decision = await run.awaitInput({ prompt: `iteration ${i}`, actions: ["submit_input"] })
              const input = decision.input ?? null
              await run.step("record", () => {
                recorded.push(input)
              })
              inputs.push(input)
            }
            return inputs
          }
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          for (let i = 0; i < 3; i++) {
            await waitForPrompt(h(), principal, run.id, `iteration ${i}`)
            await h().run(
              Engine.signalRun(principal, run.id, { action: "submit_input", input: { iteration: i } })
            )
          }
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual([{ iteration: 0 }, { iteration: 1 }, { iteration: 2 }])
          expect(recorded).toEqual([{ iteration: 0 }, { iteration: 1 }, { iteration: 2 }])
          expect(work).toBe(3)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.awaiting_input").map((v) => v.prompt)).toEqual([
            "iteration 0",
            "iteration 1",
            "iteration 2"
          ])
          expect(ofType(events, "run.signal_received")).toHaveLength(3)
          for (const id of ["work:0", "work:1", "work:2", "record:0", "record:1", "record:2"]) {
            expect(ofStep(events, "step.started", id)).toHaveLength(1)
            expect(ofStep(events, "step.done", id).map((v) => v.outcome)).toEqual(["succeeded"])
          }
          expect(ofStep(events, "step.done", "work:2")[0]!.output).toBe(2)
        }))

      it("refuses a signal to a run that is not waiting: RUN_NOT_AWAITING_INPUT (queued, running), RUN_ALREADY_TERMINAL", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let entered = 0
          const fn: H = (run) =>
            run.step("hold", async () => {
              entered++
              await gate.promise
              return "held"
            })
          const run = await createRun(h(), principal, handler)
          const signal = () => Engine.signalRun(principal, run.id, { action: "approve" })
          expect(await outcomeOf(h(), signal())).toBe("RUN_NOT_AWAITING_INPUT")
          await scene.start({ handlers: { [handler]: fn } })
          await waitFor(
            "the step to start",
            () => entered,
            (n) => n === 1
          )
          expect((await getRun(h(), principal, run.id)).status).toBe("running")
          expect(await outcomeOf(h(), signal())).toBe("RUN_NOT_AWAITING_INPUT")
          gate.open()
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(await outcomeOf(h(), signal())).toBe("RUN_ALREADY_TERMINAL")
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.signal_received")).toEqual([])
        }))

      it.skipIf(!caps.concurrentWriters)(
        withReason(
          caps.concurrentWriters,
          "lets exactly one of two racing, different signals answer a wait",
          "concurrent writers"
        ),
        () =>
          withScene(h, async ({ principal, handler, scene }) => {
            const gate = scene.gate()
            const fn: H = async (run) => {
              const decision = await run.awaitInput({ prompt: "which?", actions: ["approve", "reject"] })
              await run.step("hold", () => gate.promise)
              return decision.action
            }
            await scene.start({ handlers: { [handler]: fn } })
            const run = await createRun(h(), principal, handler)
            await waitForPrompt(h(), principal, run.id, "which?")
            const outcomes = await Promise.all([
              outcomeOf(h(), Engine.signalRun(principal, run.id, { action: "approve", comment: "one" })),
              outcomeOf(h(), Engine.signalRun(principal, run.id, { action: "reject", comment: "two" }))
            ])
            expect([...outcomes].sort()).toEqual(["RUN_NOT_AWAITING_INPUT", "ok"])
            const winner = outcomes[0] === "ok" ? "approve" : "reject"
            gate.open()
            const done = await waitForTerminal(h(), principal, run.id)
            expect(done.status).toBe("succeeded")
            expect(done.output).toBe(winner)
            const events = await readAll(h(), run.id)
            expectGapless(events)
            expect(ofType(events, "run.signal_received").map((v) => v.action)).toEqual([winner])
            expect(ofType(events, "run.requeued")).toHaveLength(1)
          })
      )

      it("validates submit_input against the wait's input_schema: SIGNAL_INPUT_INVALID, then a valid input resumes", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const schema = {
            type: "object",
            required: ["count"],
            properties: { count: { type: "integer", minimum: 1 } },
            additionalProperties: false
          }
          const fn: H = async (run) => {
            const decision = await run.awaitInput({
              prompt: "how many?",
              actions: ["submit_input", "reject"],
              input_schema: schema
            })
            return decision.input ?? null
          }
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          const waiting = await waitForPrompt(h(), principal, run.id, "how many?")
          expect(waiting.awaiting_input?.input_schema).toEqual(schema)
          const submit = (input: JsonValue) =>
            outcomeOf(h(), Engine.signalRun(principal, run.id, { action: "submit_input", input }))
          expect(await submit({ count: "three" })).toBe("SIGNAL_INPUT_INVALID")
          expect(await submit({ count: 0 })).toBe("SIGNAL_INPUT_INVALID")
          expect(await submit({ count: 2, extra: true })).toBe("SIGNAL_INPUT_INVALID")
          // A refused signal changes nothing: the run still waits.
          expect((await getRun(h(), principal, run.id)).status).toBe("awaiting_input")
          expect(await submit({ count: 3 })).toBe("ok")
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual({ count: 3 })
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.signal_received")).toEqual([
            { action: "submit_input", input: { count: 3 } }
          ])
        }))

      it("ends a wait that gets no signal in time LIMIT_INPUT_TIMEOUT (the worker's sweep fires it)", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let after = 0
          const fn: H = async (run) => {
            await run.awaitInput({ prompt: "quick?", actions: ["approve"], timeout_ms: 200 })
            await run.step("after", () => {
              after++
            })
          }
          await scene.start({ handlers: { [handler]: fn }, sweepIntervalMs: 50 })
          const run = await createRun(h(), principal, handler)
          const waiting = await waitForPrompt(h(), principal, run.id, "quick?")
          expect(waiting.awaiting_input?.expires_at).toEqual(expect.any(String))
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_INPUT_TIMEOUT")
          await scene.stopWorkers()
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(typesOf(events)).toEqual([
            "run.queued",
            "run.started",
            "run.awaiting_input",
            "run.limit_exceeded"
          ])
          expect(payloadOf(events.at(-1)!)).toEqual({
            limit: "input_timeout",
            reason_code: "LIMIT_INPUT_TIMEOUT"
          })
          // The timeout fired no earlier than the wait's expiry.
          expect(events[3]!.timestamp - events[2]!.timestamp).toBeGreaterThanOrEqual(200)
        }))
    })

    // -----------------------------------------------------------------------
    // d) cancellation
    describe("cancellation", () => {
      it("cancels a queued run at once (no worker)", async () => {
        const principal = newPrincipal()
        const run = await createRun(h(), principal, newHandler())
        const cancelled = await h().run(Engine.cancelRun(principal, run.id, { reason: "changed my mind" }))
        expect(cancelled.status).toBe("cancelled")
        expect(cancelled.error).toEqual({ reason_code: "RUN_CANCELLED", message: "changed my mind" })
        const events = await readAll(h(), run.id)
        expect(typesOf(events)).toEqual(["run.queued", "run.cancelled"])
        expect(payloadOf(events[1]!)).toEqual({ reason: "changed my mind" })
      })

      it("cancels a run awaiting input at once; it never resumes", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let after = 0
          const fn: H = async (run) => {
            await run.awaitInput({ prompt: "go?", actions: ["approve"] })
            await run.step("after", () => {
              after++
            })
          }
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          await waitForPrompt(h(), principal, run.id, "go?")
          const cancelled = await h().run(Engine.cancelRun(principal, run.id, { reason: "no longer needed" }))
          expect(cancelled.status).toBe("cancelled")
          expect(cancelled.awaiting_input).toBeNull()
          expect(await outcomeOf(h(), Engine.signalRun(principal, run.id, { action: "approve" }))).toBe(
            "RUN_ALREADY_TERMINAL"
          )
          await scene.stopWorkers()
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expect(typesOf(events)).toEqual([
            "run.queued",
            "run.started",
            "run.awaiting_input",
            "run.cancelled"
          ])
          expect(payloadOf(events[3]!)).toEqual({ reason: "no longer needed" })
        }))

      it("cancels a running run whose handler honours run.signal: cancel_requested, then cancelled quickly", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let entered = 0
          let runSignalAborted = false
          let after = 0
          const fn: H = async (run) => {
            await run.step("listen", async (step) => {
              entered++
              try {
                await untilAborted(step.signal)
              } finally {
                runSignalAborted = run.signal.aborted
              }
            })
            await run.step("after", () => {
              after++
            })
          }
          // A grace far beyond the wait below: only honouring the signal ends the run in time.
          await scene.start({ handlers: { [handler]: fn }, cancelGraceMs: 20_000 })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "the step to start",
            () => entered,
            (n) => n === 1
          )
          const requested = await h().run(Engine.cancelRun(principal, run.id, { reason: "stop please" }))
          expect(requested.status).toBe("running")
          expect(requested.cancel_requested).toBe(true)
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("cancelled")
          expect(done.error).toEqual({ reason_code: "RUN_CANCELLED", message: "stop please" })
          expect(runSignalAborted).toBe(true)
          await scene.stopWorkers()
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.cancel_requested")).toEqual([{ reason: "stop please" }])
          expect(events.at(-1)!.type).toBe("run.cancelled")
          expect(payloadOf(events.at(-1)!)).toEqual({ reason: "stop please" })
          expect(ofType(events, "run.worker.failed")).toEqual([])
          expect(ofStep(events, "step.started", "after:0")).toEqual([])
          const types = typesOf(events)
          expect(types.indexOf("run.cancel_requested")).toBeLessThan(types.indexOf("run.cancelled"))
        }))

      it("cancels a running run whose handler ignores run.signal once cancelGraceMs has passed", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let entered = 0
          let aborted = false
          const fn: H = async (run) => {
            await run.step("deaf", async () => {
              entered++
              run.signal.addEventListener("abort", () => {
                aborted = true
              })
              await gate.promise
            })
          }
          await scene.start({ handlers: { [handler]: fn }, cancelGraceMs: 150 })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "the step to start",
            () => entered,
            (n) => n === 1
          )
          const requested = await h().run(Engine.cancelRun(principal, run.id, { reason: "too slow" }))
          expect(requested.status).toBe("running")
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("cancelled")
          expect(done.error).toEqual({ reason_code: "RUN_CANCELLED", message: "too slow" })
          expect(gate.opened).toBe(false)
          await waitFor(
            "the handler's signal to fire",
            () => aborted,
            (a) => a
          )
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.cancel_requested")).toEqual([{ reason: "too slow" }])
          expect(events.at(-1)!.type).toBe("run.cancelled")
          const types = typesOf(events)
          // The run ended no earlier than the grace after the request.
          const requestedAt = events[types.indexOf("run.cancel_requested")]!.timestamp
          expect(events.at(-1)!.timestamp - requestedAt).toBeGreaterThanOrEqual(150)
        }))
    })

    // -----------------------------------------------------------------------
    // e) limits
    describe("limits", () => {
      it("ends the run LIMIT_MAX_STEPS when it starts one step more than max_steps", () =>
        withScene(h, async ({ scene, runToEnd }) => {
          let calls = 0
          const fn: H = async (run) => {
            for (let i = 0; i < 3; i++)
              await run.step("each", () => {
                calls++
              })
          }
          const { run, done } = await runToEnd(fn, { limits: { max_steps: 2 } })
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_MAX_STEPS")
          await scene.stopWorkers()
          expect(calls).toBe(2)
          expect(done.usage.steps).toBe(2)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "step.started").map((v) => v.step_id)).toEqual(["each:0", "each:1"])
          expect(payloadOf(events.at(-1)!)).toEqual({ limit: "max_steps", reason_code: "LIMIT_MAX_STEPS" })
        }))

      it("ends the run LIMIT_MAX_DURATION while a step outlasts max_duration_ms, and aborts the step", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let entered = 0
          let aborted = false
          const fn: H = (run) =>
            run.step("slow", async (step) => {
              entered++
              step.signal.addEventListener("abort", () => {
                aborted = true
              })
              await gate.promise
            })
          await scene.start({ handlers: { [handler]: fn }, sweepIntervalMs: 50 })
          const run = await createRun(h(), principal, handler, { limits: { max_duration_ms: 300 } })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(entered).toBe(1)
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_MAX_DURATION")
          await waitFor(
            "the step's signal to fire",
            () => aborted,
            (a) => a
          )
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(payloadOf(events.at(-1)!)).toEqual({
            limit: "max_duration_ms",
            reason_code: "LIMIT_MAX_DURATION"
          })
          const started = events.find((e) => e.type === "run.started")!
          expect(events.at(-1)!.timestamp - started.timestamp).toBeGreaterThanOrEqual(300)
        }))

      it("ends the run LIMIT_BUDGET when reported tokens pass max_tokens", () =>
        withScene(h, async ({ scene, runToEnd }) => {
          let after = 0
          const fn: H = async (run) => {
            await run.step("spend", async () => {
              await run.reportUsage({ tokens: 60 })
            })
            await run.reportUsage({ tokens: 60 })
            await run.step("after", () => {
              after++
            })
          }
          const { run, done } = await runToEnd(fn, { limits: { max_tokens: 100 } })
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_BUDGET")
          expect(done.usage.tokens).toBe(120)
          await scene.stopWorkers()
          expect(after).toBe(0)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          const usage = ofType(events, "step.progress").filter((v) => v.kind === "usage")
          expect(usage.map((v) => v.tokens)).toEqual([60, 60])
          expect(payloadOf(events.at(-1)!)).toEqual({ limit: "max_tokens", reason_code: "LIMIT_BUDGET" })
          expect(ofStep(events, "step.started", "after:0")).toEqual([])
        }))

      it("ends the run LIMIT_BUDGET when reported cost passes max_cost_usd (reaching it exactly is fine)", () =>
        withScene(h, async ({ scene, runToEnd }) => {
          const spent: number[] = []
          const fn: H = async (run) => {
            for (let i = 0; i < 4; i++)
              await run.step("call", async () => {
                spent.push(i)
                await run.reportUsage({ cost_usd: 0.25 })
              })
          }
          const { run, done } = await runToEnd(fn, { limits: { max_cost_usd: 0.5 } })
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_BUDGET")
          expect(done.usage.cost_usd).toBeCloseTo(0.75)
          await scene.stopWorkers()
          expect(spent).toEqual([0, 1, 2])
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(payloadOf(events.at(-1)!)).toEqual({ limit: "max_cost_usd", reason_code: "LIMIT_BUDGET" })
          expect(ofStep(events, "step.started", "call:3")).toEqual([])
        }))

      it("ends the run LIMIT_INPUT_TIMEOUT from limits.input_timeout_ms when the wait names no timeout", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const fn: H = async (run) => {
            await run.awaitInput({ prompt: "anyone?", actions: ["approve", "reject"] })
            return "answered"
          }
          await scene.start({ handlers: { [handler]: fn }, sweepIntervalMs: 50 })
          const run = await createRun(h(), principal, handler, { limits: { input_timeout_ms: 200 } })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("limit_exceeded")
          expect(done.error?.reason_code).toBe("LIMIT_INPUT_TIMEOUT")
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.awaiting_input")[0]!.expires_at).toEqual(expect.any(String))
          expect(payloadOf(events.at(-1)!)).toEqual({
            limit: "input_timeout",
            reason_code: "LIMIT_INPUT_TIMEOUT"
          })
        }))
    })

    // -----------------------------------------------------------------------
    // f) fencing
    describe("fencing", () => {
      it("a stale worker cannot append after another worker took its run over", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          const calls = { a: 0, b: 0 }
          let staleReturned = false
          const fnA: H = async (run) => {
            const s = await run.step("s", async () => {
              calls.a++
              await gate.promise
              staleReturned = true
              return "from A"
            })
            return { s }
          }
          const fnB: H = async (run) => {
            const s = await run.step("s", () => {
              calls.b++
              return "from B"
            })
            return { s }
          }
          // A never renews its lease: it goes stale while its step is blocked. (Concurrency 1:
          // its only slot stays busy, so A itself does not re-claim the run once the lease expires.)
          const a = await scene.start({
            workerId: "stale-a",
            handlers: { [handler]: fnA },
            leaseMs: 300,
            heartbeatMs: 60_000,
            concurrency: 1
          })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "worker A's step to start",
            () => calls.a,
            (n) => n === 1
          )
          await scene.start({ workerId: "fresh-b", handlers: { [handler]: fnB }, leaseMs: 1_000 })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual({ s: "from B" })
          const before = await readAll(h(), run.id)

          // Let A's step finish: it must not be able to write anything.
          gate.open()
          await waitFor(
            "worker A's step to return",
            () => staleReturned,
            (r) => r
          )
          await scene.stop(a, { graceMs: 2_000 })

          const events = await readAll(h(), run.id)
          expect(events).toEqual(before)
          expectGapless(events)
          expect(ofStep(events, "step.done", "s:0")).toEqual([
            { step_id: "s:0", name: "s", outcome: "succeeded", output: "from B" }
          ])
          expect(ofType(events, "run.started")).toEqual([
            { attempt: 1, worker_id: "stale-a" },
            { attempt: 2, worker_id: "fresh-b" }
          ])
          expect(ofType(events, "run.requeued")).toEqual([{ reason: "lease_expired", attempt: 2 }])
          expect(events.at(-1)!.type).toBe("run.worker.succeeded")
          expect(payloadOf(events.at(-1)!)).toEqual({ output: { s: "from B" } })
          expect(calls).toEqual({ a: 1, b: 1 })
          expect((await getRun(h(), principal, run.id)).status).toBe("succeeded")
        }))
      it("stop() aborts every execution, also after the worker re-claimed its own expired run", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const first = scene.gate()
          const second = scene.gate()
          let calls = 0
          const aborted = [false, false, false]
          const fn: H = (run) =>
            run.step("s", async (step) => {
              const n = ++calls
              step.signal.addEventListener("abort", () => {
                aborted[n - 1] = true
              })
              if (n === 1) await first.promise
              else if (n === 2) await second.promise
              return n
            })
          // Heartbeats that never come (a stalled event loop, a store that times out renewals):
          // the lease expires under the running step and this same worker, with a free slot, claims again.
          const worker = await scene.start({
            workerId: "self-reclaim",
            handlers: { [handler]: fn },
            leaseMs: 300,
            heartbeatMs: 60_000,
            concurrency: 2
          })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "the second execution's step to start",
            () => calls,
            (n) => n >= 2
          )
          // The first execution's step returns: its write is refused (lease lost) and it ends.
          first.open()
          await waitFor(
            "the stale execution to end",
            () => aborted[0],
            (a) => a === true
          )
          await scene.stop(worker, { graceMs: 0 })
          // The second execution was still in flight: stop() must abort it and release its lease.
          await waitFor(
            "the live execution to be aborted by stop()",
            () => aborted[1],
            (a) => a === true,
            2_000
          )
          const record = await getRecord(h(), run.id)
          expect(record.status).toBe("running")
          expect(record.lease_expires_at).not.toBeNull()
          expect(record.lease_expires_at!).toBeLessThanOrEqual(Date.now())
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "step.done")).toEqual([])
        }))
    })

    // -----------------------------------------------------------------------
    // g) progress
    describe("progress", () => {
      it("records a step's content deltas and own kinds as step.progress with its step id, in order, before step.done", () =>
        withScene(h, async ({ runToEnd }) => {
          const words = ["Durable ", "runs ", "stream ", "their ", "progress."]
          const fn: H = async (run) => {
            await run.step("prepare", () => "ready")
            const text = await run.step("write", async (step) => {
              step.progress({ kind: "status", phase: "drafting" })
              for (const [i, word] of words.entries()) {
                // Half through the step's own reporter, half through the run's (same async context).
                if (i % 2 === 0) step.progress({ content_delta: word })
                else run.progress({ content_delta: word })
                if (i === 2) await new Promise<void>((resolve) => setImmediate(resolve))
              }
              step.progress({ kind: "status", phase: "done" })
              return words.join("")
            })
            return text
          }
          const { run, done } = await runToEnd(fn)
          expect(done.status).toBe("succeeded")
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(contentOf(events, "write:0")).toBe(words.join(""))
          expect(contentOf(events, null)).toBe("")
          const progress = events.filter((e) => e.type === "step.progress")
          expect(progress.length).toBeGreaterThanOrEqual(3)
          for (const e of progress) expect(payloadOf(e).step_id).toBe("write:0")
          const statuses = progress.map(payloadOf).filter((v) => v.kind === "status")
          expect(statuses).toEqual([
            { step_id: "write:0", kind: "status", phase: "drafting" },
            { step_id: "write:0", kind: "status", phase: "done" }
          ])
          // The first status came before any delta, the last after all of them.
          const kinds = progress.map((e) => payloadOf(e).kind)
          expect(kinds[0]).toBe("status")
          expect(kinds.at(-1)).toBe("status")
          const started = events.findIndex(
            (e) => e.type === "step.started" && payloadOf(e).step_id === "write:0"
          )
          const finished = events.findIndex(
            (e) => e.type === "step.done" && payloadOf(e).step_id === "write:0"
          )
          for (const e of progress) {
            expect(e.seq).toBeGreaterThan(events[started]!.seq)
            expect(e.seq).toBeLessThan(events[finished]!.seq)
          }
        }))

      it("does not write run-level progress again when a run is replayed after a crash", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let second = 0
          const fn: H = async (run) => {
            await run.step("one", () => 1)
            run.progress({ kind: "note", text: "between the steps" })
            run.progress({ content_delta: "hello " })
            run.progress({ content_delta: "world" })
            await run.step("two", async () => {
              second++
              if (second === 1) await gate.promise
              return 2
            })
            run.progress({ kind: "note", text: "at the end" })
            return "done"
          }
          const a = await scene.start({ workerId: "progress-a", handlers: { [handler]: fn }, leaseMs: 400 })
          const run = await createRun(h(), principal, handler)
          await waitFor(
            "step two to start",
            () => second,
            (n) => n === 1
          )
          // Every run-level report made before the crash is in the log.
          await waitFor(
            "all run-level progress before the crash",
            () => readAll(h(), run.id),
            (events) =>
              contentOf(events, null) === "hello world" &&
              ofType(events, "step.progress").some((v) => v.kind === "note")
          )
          await scene.crash(a)
          await scene.start({ workerId: "progress-b", handlers: { [handler]: fn }, leaseMs: 400 })
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(second).toBe(2)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofType(events, "run.requeued")).toEqual([{ reason: "lease_expired", attempt: 2 }])
          const runLevel = ofType(events, "step.progress").filter((v) => v.step_id === null)
          expect(contentOf(events, null)).toBe("hello world")
          expect(runLevel.filter((v) => v.kind === "note").map((v) => v.text)).toEqual([
            "between the steps",
            "at the end"
          ])
        }))
      it("keeps the progress of steps running in parallel apart, and replays both without re-running them", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const calls = { x: 0, y: 0 }
          const tick = () => new Promise<void>((resolve) => setImmediate(resolve))
          const fn: H = async (run) => {
            const [x, y] = await Promise.all([
              run.step("x", async (step) => {
                calls.x++
                step.progress({ content_delta: "x1 " })
                await tick()
                run.progress({ content_delta: "x2" })
                return "X"
              }),
              run.step("y", async (step) => {
                calls.y++
                run.progress({ content_delta: "y1 " })
                await tick()
                step.progress({ content_delta: "y2" })
                return "Y"
              })
            ])
            const decision = await run.awaitInput({ prompt: "both done?", actions: ["approve"] })
            return [x, y, decision.action]
          }
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          await waitForPrompt(h(), principal, run.id, "both done?")
          await h().run(Engine.signalRun(principal, run.id, { action: "approve" }))
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual(["X", "Y", "approve"])
          expect(calls).toEqual({ x: 1, y: 1 })
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(contentOf(events, "x:0")).toBe("x1 x2")
          expect(contentOf(events, "y:0")).toBe("y1 y2")
          expect(contentOf(events, null)).toBe("")
          expect(ofStep(events, "step.done", "x:0").map((v) => v.output)).toEqual(["X"])
          expect(ofStep(events, "step.done", "y:0").map((v) => v.output)).toEqual(["Y"])
        }))
    })

    // -----------------------------------------------------------------------
    // h) concurrency
    describe("concurrency", () => {
      it("runs as many runs at once as its concurrency, and no more", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const gate = scene.gate()
          let active = 0
          let maxActive = 0
          const entered = new Set<string>()
          const fn: H = async (run) => {
            await run.step("hold", async () => {
              entered.add(run.runId)
              active++
              maxActive = Math.max(maxActive, active)
              try {
                await gate.promise
              } finally {
                active--
              }
            })
            return run.runId
          }
          const runs = []
          for (let i = 0; i < 3; i++) runs.push(await createRun(h(), principal, handler))
          await scene.start({ handlers: { [handler]: fn }, concurrency: 3 })
          // All three are held at once before any is let go.
          await waitFor(
            "three runs inside their step at once",
            () => entered.size,
            (n) => n === 3
          )
          for (const run of runs) expect((await getRun(h(), principal, run.id)).status).toBe("running")
          // A fourth waits for a free slot.
          const fourth = await createRun(h(), principal, handler)
          expect(gate.opened).toBe(false)
          expect((await getRun(h(), principal, fourth.id)).status).toBe("queued")
          expect(maxActive).toBe(3)
          gate.open()
          for (const run of [...runs, fourth]) {
            const done = await waitForTerminal(h(), principal, run.id)
            expect(done.status).toBe("succeeded")
            expect(done.output).toBe(run.id)
          }
          expect(maxActive).toBe(3)
        }))

      it("completes 10 runs with concurrency 3, never more than 3 at once", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          let active = 0
          let maxActive = 0
          const fn: H = async (run) => {
            active++
            maxActive = Math.max(maxActive, active)
            try {
              const a = await run.step("a", async () => {
                await new Promise<void>((resolve) => setImmediate(resolve))
                return (run.input as { n: number }).n
              })
              const b = await run.step("b", () => a * 2)
              return b
            } finally {
              active--
            }
          }
          await scene.start({ handlers: { [handler]: fn }, concurrency: 3 })
          const runs = []
          for (let n = 0; n < 10; n++) runs.push(await createRun(h(), principal, handler, { input: { n } }))
          for (const [n, run] of runs.entries()) {
            const done = await waitForTerminal(h(), principal, run.id)
            expect(done.status).toBe("succeeded")
            expect(done.output).toBe(n * 2)
            const events = await readAll(h(), run.id)
            expectGapless(events)
            expect(ofType(events, "run.started")).toHaveLength(1)
          }
          expect(maxActive).toBeGreaterThanOrEqual(1)
          expect(maxActive).toBeLessThanOrEqual(3)
        }))
    })

    // -----------------------------------------------------------------------
    // i) Effect-style handlers
    describe("Effect-style handlers", () => {
      it("runs a handler that returns an Effect built with run.effect.*", () =>
        withScene(h, async ({ principal, handler, scene }) => {
          const calls = { fetch: 0, flaky: 0, publish: 0 }
          const fn: H = (run) =>
            Effect.gen(function* () {
              const fetched = yield* run.effect.step(
                "fetch",
                Effect.sync(() => {
                  calls.fetch++
                  return 21
                })
              )
              const doubled = yield* run.effect.step("flaky", (step) =>
                Effect.suspend(() => {
                  calls.flaky++
                  return step.attempt === 1 ? Effect.fail(new Error("once")) : Effect.succeed(fetched * 2)
                })
              )
              yield* run.effect.progress({ content_delta: "effect " })
              yield* run.effect.reportUsage({ tokens: 3 })
              const decision = yield* run.effect.awaitInput({
                prompt: "publish?",
                actions: ["approve", "reject"]
              })
              const published = yield* run.effect.step(
                "publish",
                Effect.sync(() => {
                  calls.publish++
                  return decision.action === "approve"
                })
              )
              return { doubled, published }
            })
          await scene.start({ handlers: { [handler]: fn } })
          const run = await createRun(h(), principal, handler)
          await waitForPrompt(h(), principal, run.id, "publish?")
          await h().run(Engine.signalRun(principal, run.id, { action: "approve" }))
          const done = await waitForTerminal(h(), principal, run.id)
          expect(done.status).toBe("succeeded")
          expect(done.output).toEqual({ doubled: 42, published: true })
          expect(calls).toEqual({ fetch: 1, flaky: 2, publish: 1 })
          expect(done.usage.tokens).toBe(3)
          const events = await readAll(h(), run.id)
          expectGapless(events)
          expect(ofStep(events, "step.done", "flaky:0").map((v) => v.outcome)).toEqual([
            "retry_step",
            "succeeded"
          ])
          expect(contentOf(events, null)).toBe("effect ")
          expect(ofType(events, "step.progress").filter((v) => v.kind === "usage")).toHaveLength(1)
        }))
    })
  })
