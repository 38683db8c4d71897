import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { DEFAULT_LIMITS, INITIAL_USAGE } from "../src/Limits.js"
import { NO_REDACTION, REDACTED } from "../src/Redaction.js"
import { type RunRecord, RunRecord as RunRecordSchema } from "../src/Run.js"
import { EventBody } from "../src/RunEvent.js"
import * as RunState from "../src/RunState.js"
import {
  createParams,
  ctx,
  Driver,
  deepFreeze,
  eventOf,
  payloadValue,
  projection,
  RunCommand,
  T0,
  types
} from "./fixtures/runs.js"

const isRunRecord = Schema.is(RunRecordSchema)
const isEventBody = Schema.is(EventBody)

type LimitsOverride = Parameters<typeof createParams>[0] extends infer P
  ? P extends { readonly limits?: infer L }
    ? L
    : never
  : never

/** A driver whose run is running under lease "L1" (30 s) since T0. */
const running = (limits: LimitsOverride = {}): Driver => {
  const d = new Driver(createParams({ limits }))
  d.claim("L1")
  return d
}

/** A driver whose run waits for input, offered `actions`. */
const awaiting = (
  fields: Parameters<Driver["awaitInput"]>[0] = { actions: ["approve", "reject"] },
  limits: LimitsOverride = {}
): Driver => {
  const d = running(limits)
  d.awaitInput(fields)
  return d
}

describe("RunState.create", () => {
  it("records run.queued at seq 1 with handler and metadata", () => {
    const d = new Driver(createParams({ metadata: { env: "prod", n: 3, beta: true } }))
    expect(d.log).toEqual([
      {
        run_id: d.params.id,
        seq: 1,
        type: "run.queued",
        timestamp: T0,
        payload: {
          redacted: false,
          value: { handler: "default", metadata: { env: "prod", n: 3, beta: true } }
        }
      }
    ])
    expect(d.run).toMatchObject({
      id: d.params.id,
      customer_id: "acme",
      status: "queued",
      version: 1,
      last_seq: 1,
      metadata: { env: "prod", n: 3, beta: true },
      usage: INITIAL_USAGE,
      limits: DEFAULT_LIMITS,
      created_at: T0,
      updated_at: T0,
      started_at: null,
      finished_at: null,
      deadline_at: null,
      timer_at: null,
      lease_token: null,
      available_at: T0
    })
    expect(isRunRecord(d.run)).toBe(true)
    expect(d.log.every((e) => isEventBody(e))).toBe(true)
  })

  it("redacts input and metadata before anything is stored", () => {
    const d = new Driver(
      createParams({
        input: {
          q: "hi",
          password: "hunter2",
          nested: { api_key: "abc", list: [{ token: "t" }, "Bearer abcdefghijklmnop"] }
        },
        metadata: { env: "prod", apiKey: "k-123" }
      })
    )
    expect(d.run.input).toEqual({
      q: "hi",
      password: REDACTED,
      nested: { api_key: REDACTED, list: [{ token: REDACTED }, REDACTED] }
    })
    expect(d.run.metadata).toEqual({ env: "prod", apiKey: REDACTED })
    expect(d.log[0]!.payload).toEqual({
      redacted: true,
      value: { handler: "default", metadata: { env: "prod", apiKey: REDACTED } }
    })
    expect(JSON.stringify([d.run, d.log])).not.toMatch(/hunter2|abcdefghijklmnop|k-123/)
  })

  it("marks run.queued unredacted when the metadata is clean, even if the input was redacted", () => {
    const d = new Driver(createParams({ input: { password: "x" }, metadata: { env: "prod" } }))
    expect(d.run.input).toEqual({ password: REDACTED })
    expect(d.log[0]!.payload.redacted).toBe(false)
  })

  it("keeps everything with a policy that redacts nothing", () => {
    const created = RunState.create(
      createParams({ input: { password: "x" }, metadata: { token: "t" } }),
      ctx(T0, NO_REDACTION)
    )
    expect(created.record.input).toEqual({ password: "x" })
    expect(created.record.metadata).toEqual({ token: "t" })
  })
})

describe("Claim", () => {
  it("starts a queued run under a lease", () => {
    const d = new Driver()
    d.advance(5)
    const t = d.claim("L1", 30_000, "worker-a")
    expect(types(t)).toEqual(["run.started"])
    expect(payloadValue(t, "run.started")).toEqual({ attempt: 1, worker_id: "worker-a" })
    expect(t.events[0]!.seq).toBe(2)
    expect(d.run).toMatchObject({
      status: "running",
      worker_id: "worker-a",
      lease_token: "L1",
      lease_expires_at: T0 + 5 + 30_000,
      available_at: null,
      started_at: T0 + 5,
      deadline_at: T0 + 5 + DEFAULT_LIMITS.max_duration_ms,
      timer_at: T0 + 5 + DEFAULT_LIMITS.max_duration_ms,
      version: 2,
      last_seq: 2
    })
  })

  it("does not take a running run whose lease is live", () => {
    const d = running()
    d.advance(29_999)
    d.same(RunCommand.Claim({ workerId: "w2", leaseToken: "L2", leaseMs: 30_000 }))
  })

  it("takes over a running run whose lease expired: run.requeued lease_expired, then run.started", () => {
    const d = running()
    d.startStep("s1")
    d.advance(30_000)
    const t = d.claim("L2", 30_000, "w2")
    expect(types(t)).toEqual(["run.requeued", "run.started"])
    expect(payloadValue(t, "run.requeued")).toEqual({ reason: "lease_expired", attempt: 2 })
    expect(payloadValue(t, "run.started")).toEqual({ attempt: 2, worker_id: "w2" })
    expect(d.run).toMatchObject({ status: "running", lease_token: "L2", worker_id: "w2", open_steps: {} })
    expect(d.run.usage.attempts).toBe(2)
    // started_at and the deadline keep their first values
    expect(d.run.started_at).toBe(T0)
    expect(d.run.deadline_at).toBe(T0 + DEFAULT_LIMITS.max_duration_ms)
    // the old holder is fenced out
    expect(d.refused(RunCommand.Succeed({ leaseToken: "L1", output: 1 }))).toBe("LEASE_LOST")
  })

  it("ends instead of starting a run whose deadline passed while queued", () => {
    const d = running({ max_duration_ms: 1000 })
    d.startStep("s1")
    d.finishStep("s1", { outcome: "retry_step", retryInMs: 5_000, requeue: true })
    expect(d.run.timer_at).toBe(T0 + 1000)
    d.advance(5_000)
    const t = d.claim("L2")
    expect(types(t)).toEqual(["run.limit_exceeded"])
    expect(payloadValue(t, "run.limit_exceeded")).toEqual({
      limit: "max_duration_ms",
      reason_code: "LIMIT_MAX_DURATION"
    })
    expect(d.run).toMatchObject({ status: "limit_exceeded", lease_token: null, available_at: null })
  })

  it("refuses a lease that is not a positive integer of milliseconds", () => {
    const d = new Driver()
    for (const leaseMs of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
      expect(d.refused(RunCommand.Claim({ workerId: "w", leaseToken: "L", leaseMs })), String(leaseMs)).toBe(
        "VALIDATION_FAILED"
      )
    expect(d.run.status).toBe("queued")
  })

  it("changes nothing on awaiting, terminal or not-yet-available runs", () => {
    const w = awaiting()
    w.same(RunCommand.Claim({ workerId: "w", leaseToken: "X", leaseMs: 1000 }))
    const c = new Driver()
    c.ok(RunCommand.RequestCancel({}))
    c.same(RunCommand.Claim({ workerId: "w", leaseToken: "X", leaseMs: 1000 }))
  })
})

describe("steps", () => {
  it("start, progress and done", () => {
    const d = running()
    const started = d.startStep("s1", 1, "fetch")
    expect(types(started)).toEqual(["step.started"])
    expect(payloadValue(started, "step.started")).toEqual({ step_id: "s1", name: "fetch", attempt: 1 })
    expect(d.run.usage.steps).toBe(1)
    expect(d.run.open_steps).toEqual({ s1: { name: "fetch", attempt: 1 } })

    const progress = d.ok(
      RunCommand.Progress({
        leaseToken: d.token,
        items: [
          { stepId: "s1", kind: "content_delta", fields: { content_delta: "Hel" } },
          { stepId: null, kind: "tool_call", fields: { tool: "search", step_id: "spoofed", kind: "spoofed" } }
        ]
      })
    )
    expect(progress.events.map((e) => e.payload)).toEqual([
      { redacted: false, value: { step_id: "s1", kind: "content_delta", content_delta: "Hel" } },
      { redacted: false, value: { step_id: null, kind: "tool_call", tool: "search" } }
    ])
    expect(progress.events.map((e) => e.seq)).toEqual([4, 5])

    const done = d.finishStep("s1", { outcome: "succeeded", output: { docs: 3 } })
    expect(payloadValue(done, "step.done")).toEqual({
      step_id: "s1",
      name: "fetch",
      outcome: "succeeded",
      output: { docs: 3 }
    })
    expect(d.run.open_steps).toEqual({})
    expect(d.run.status).toBe("running")
    expect(projection(d.folded())).toEqual(projection(d.run))
  })

  it("refuses a second start of an open step, a bad attempt, and steps that are not open", () => {
    const d = running()
    d.startStep("s1")
    const start = (stepId: string, attempt: number) =>
      d.refused(RunCommand.StartStep({ leaseToken: d.token, stepId, name: stepId, attempt }))
    expect(start("s1", 1)).toBe("STEP_MISMATCH")
    expect(start("s2", 0)).toBe("VALIDATION_FAILED")
    expect(start("s2", 1.5)).toBe("VALIDATION_FAILED")
    expect(start("s2", DEFAULT_LIMITS.max_step_attempts + 1)).toBe("STEP_MISMATCH")
    expect(
      d.refused(RunCommand.FinishStep({ leaseToken: d.token, stepId: "s2", outcome: "succeeded" }))
    ).toBe("STEP_MISMATCH")
    expect(
      d.refused(
        RunCommand.Progress({
          leaseToken: d.token,
          items: [{ stepId: "s2", kind: "content_delta", fields: { content_delta: "x" } }]
        })
      )
    ).toBe("STEP_MISMATCH")
    expect(
      d.refused(RunCommand.ReportUsage({ leaseToken: d.token, stepId: "s2", tokens: 1, costUsd: 0 }))
    ).toBe("STEP_MISMATCH")
  })

  it("treats step ids named like Object.prototype members as ordinary ids", () => {
    const d = running()
    for (const id of ["constructor", "toString", "__proto__", "hasOwnProperty"]) {
      expect(
        d.refused(RunCommand.FinishStep({ leaseToken: d.token, stepId: id, outcome: "succeeded" })),
        `finish of never-started ${id}`
      ).toBe("STEP_MISMATCH")
      expect(
        d.refused(RunCommand.ReportUsage({ leaseToken: d.token, stepId: id, tokens: 1, costUsd: 0 }))
      ).toBe("STEP_MISMATCH")
      d.startStep(id)
      expect(Object.keys(d.run.open_steps)).toEqual([id])
      const done = d.finishStep(id, { outcome: "succeeded", output: id })
      expect(payloadValue(done, "step.done")).toMatchObject({ step_id: id, name: id, outcome: "succeeded" })
      expect(Object.keys(d.run.open_steps)).toEqual([])
    }
    expect(d.run.usage.steps).toBe(4)
    expect(projection(d.folded())).toEqual(projection(d.run))
  })

  it("refuses empty progress as no change and usage disguised as progress", () => {
    const d = running()
    d.same(RunCommand.Progress({ leaseToken: d.token, items: [] }))
    expect(
      d.refused(
        RunCommand.Progress({
          leaseToken: d.token,
          items: [{ stepId: null, kind: "usage", fields: { tokens: 5 } }]
        })
      )
    ).toBe("VALIDATION_FAILED")
  })

  it("reports usage as step.progress kind usage and adds it up", () => {
    const d = running()
    d.startStep("s1")
    const t = d.ok(RunCommand.ReportUsage({ leaseToken: d.token, stepId: "s1", tokens: 40, costUsd: 0.25 }))
    expect(payloadValue(t, "step.progress")).toEqual({
      step_id: "s1",
      kind: "usage",
      tokens: 40,
      cost_usd: 0.25
    })
    d.ok(RunCommand.ReportUsage({ leaseToken: d.token, stepId: null, tokens: 2, costUsd: 0.5 }))
    expect(d.run.usage).toEqual({ steps: 1, attempts: 1, tokens: 42, cost_usd: 0.75 })
  })

  it("refuses usage that is negative, fractional or beyond safe integers", () => {
    const d = running()
    const report = (tokens: number, costUsd: number) =>
      d.refused(RunCommand.ReportUsage({ leaseToken: d.token, stepId: null, tokens, costUsd }))
    expect(report(-1, 0)).toBe("VALIDATION_FAILED")
    expect(report(1.5, 0)).toBe("VALIDATION_FAILED")
    expect(report(0, -0.1)).toBe("VALIDATION_FAILED")
    expect(report(0, Number.POSITIVE_INFINITY)).toBe("VALIDATION_FAILED")
    expect(report(0, Number.NaN)).toBe("VALIDATION_FAILED")
    expect(report(2 ** 53, 0)).toBe("VALIDATION_FAILED")
    d.ok(
      RunCommand.ReportUsage({
        leaseToken: d.token,
        stepId: null,
        tokens: Number.MAX_SAFE_INTEGER,
        costUsd: 0
      })
    )
    expect(isRunRecord(d.run)).toBe(true)
    // one more token would make the stored counter unreadable
    expect(report(1, 0)).toBe("VALIDATION_FAILED")
  })

  it("retry_step in place keeps the run and lets the next attempt start without counting a new step", () => {
    const d = running()
    d.startStep("s1", 1, "fetch")
    const retry = d.finishStep("s1", { outcome: "retry_step", error: { message: "timeout" }, retryInMs: 250 })
    expect(types(retry)).toEqual(["step.done"])
    expect(payloadValue(retry, "step.done")).toEqual({
      step_id: "s1",
      name: "fetch",
      outcome: "retry_step",
      error: { message: "timeout" },
      retry_in_ms: 250
    })
    expect(d.run.status).toBe("running")
    expect(d.run.lease_token).toBe("L1")
    d.startStep("s1", 2, "fetch")
    expect(d.run.usage.steps).toBe(1)
    expect(d.run.open_steps).toEqual({ s1: { name: "fetch", attempt: 2 } })
  })

  it("retry_step with requeue lets go of the run until the backoff has passed", () => {
    const d = running()
    d.startStep("s1")
    d.advance(100)
    const t = d.finishStep("s1", { outcome: "retry_step", retryInMs: 5_000, requeue: true })
    expect(types(t)).toEqual(["step.done", "run.requeued"])
    expect(payloadValue(t, "run.requeued")).toEqual({ reason: "retry", attempt: 2 })
    expect(d.run).toMatchObject({
      status: "queued",
      lease_token: null,
      lease_expires_at: null,
      worker_id: null,
      available_at: T0 + 100 + 5_000,
      open_steps: {}
    })
    expect(t.patch.available_at).toBe(T0 + 100 + 5_000)
    d.advance(4_999)
    d.same(RunCommand.Claim({ workerId: "w2", leaseToken: "L2", leaseMs: 1000 }))
    d.advance(1)
    const claimed = d.claim("L2", 1000, "w2")
    expect(payloadValue(claimed, "run.started")).toEqual({ attempt: 2, worker_id: "w2" })
    d.startStep("s1", 2)
    expect(d.run.usage).toMatchObject({ steps: 1, attempts: 2 })
  })

  it("refuses a negative or fractional backoff", () => {
    const d = running()
    d.startStep("s1")
    for (const retryInMs of [-1, 0.5, Number.NaN])
      expect(
        d.refused(
          RunCommand.FinishStep({ leaseToken: d.token, stepId: "s1", outcome: "retry_step", retryInMs })
        )
      ).toBe("VALIDATION_FAILED")
  })

  it("fail_run fails the run with STEP_FAILED", () => {
    const d = running()
    d.startStep("s1", 1, "publish")
    d.advance(7)
    const t = d.finishStep("s1", { outcome: "fail_run", error: { message: "boom", name: "TypeError" } })
    expect(types(t)).toEqual(["step.done", "run.worker.failed"])
    expect(payloadValue(t, "step.done")).toEqual({
      step_id: "s1",
      name: "publish",
      outcome: "fail_run",
      error: { message: "boom", name: "TypeError" }
    })
    expect(payloadValue(t, "run.worker.failed")).toEqual({ reason_code: "STEP_FAILED", message: "boom" })
    expect(d.run).toMatchObject({
      status: "failed",
      error: { reason_code: "STEP_FAILED", message: "boom" },
      finished_at: T0 + 7,
      lease_token: null,
      timer_at: null,
      open_steps: {}
    })
  })

  it("retry_step on the last allowed attempt fails the run with STEP_RETRIES_EXHAUSTED", () => {
    const d = running({ max_step_attempts: 2 })
    d.startStep("s1", 1, "fetch")
    d.finishStep("s1", { outcome: "retry_step", error: { message: "flaky" } })
    d.startStep("s1", 2, "fetch")
    const t = d.finishStep("s1", { outcome: "retry_step", error: { message: "flaky" }, requeue: true })
    expect(types(t)).toEqual(["step.done", "run.worker.failed"])
    expect(payloadValue(t, "step.done")).toMatchObject({ outcome: "fail_run", error: { message: "flaky" } })
    expect(payloadValue(t, "run.worker.failed")).toEqual({
      reason_code: "STEP_RETRIES_EXHAUSTED",
      message: "Step fetch failed 2 times: flaky"
    })
    expect(d.run.status).toBe("failed")
    // a third attempt could not have started anyway
    const d2 = running({ max_step_attempts: 2 })
    expect(
      d2.refused(RunCommand.StartStep({ leaseToken: d2.token, stepId: "s", name: "s", attempt: 3 }))
    ).toBe("STEP_MISMATCH")
  })
})

describe("AwaitInput and Signal", () => {
  it("suspends the run, lets go of its lease and times the wait", () => {
    const d = running()
    d.advance(1000)
    const schema = { type: "object", properties: { title: { type: "string" } } }
    const t = d.awaitInput({
      prompt: "Title?",
      actions: ["submit_input", "reject"],
      inputSchema: schema,
      timeoutMs: 60_000
    })
    expect(types(t)).toEqual(["run.awaiting_input"])
    expect(payloadValue(t, "run.awaiting_input")).toEqual({
      prompt: "Title?",
      actions: ["submit_input", "reject"],
      input_schema: schema,
      expires_at: new Date(T0 + 61_000).toISOString()
    })
    expect(d.run).toMatchObject({
      status: "awaiting_input",
      worker_id: null,
      lease_token: null,
      lease_expires_at: null,
      available_at: null,
      awaiting_input: {
        prompt: "Title?",
        actions: ["submit_input", "reject"],
        input_schema: schema,
        expires_at: T0 + 61_000,
        since: T0 + 1000
      },
      timer_at: T0 + 61_000
    })
  })

  it("uses limits.input_timeout_ms unless the wait names its own timeout or none", () => {
    const withDefault = running({ input_timeout_ms: 5_000 })
    withDefault.awaitInput({ actions: ["approve"] })
    expect(withDefault.run.awaiting_input?.expires_at).toBe(T0 + 5_000)

    const noTimeout = running({ input_timeout_ms: 5_000 })
    const t = noTimeout.awaitInput({ actions: ["approve"], timeoutMs: null })
    expect(payloadValue(t, "run.awaiting_input")).not.toHaveProperty("expires_at")
    expect(noTimeout.run.awaiting_input?.expires_at).toBeNull()
    // paused: no timer while waiting without a timeout
    expect(noTimeout.run.timer_at).toBeNull()

    const none = running()
    none.awaitInput({ actions: ["approve"] })
    expect(none.run.awaiting_input?.expires_at).toBeNull()
  })

  it("refuses a wait without actions, with repeated actions or with a bad timeout", () => {
    const d = running()
    const wait = (actions: ReadonlyArray<"approve" | "reject" | "submit_input">, timeoutMs?: number) =>
      d.refused(
        RunCommand.AwaitInput({
          leaseToken: d.token,
          prompt: "?",
          actions,
          ...(timeoutMs === undefined ? {} : { timeoutMs })
        })
      )
    expect(wait([])).toBe("VALIDATION_FAILED")
    expect(wait(["approve", "approve"])).toBe("VALIDATION_FAILED")
    expect(wait(["approve"], 0)).toBe("VALIDATION_FAILED")
    expect(wait(["approve"], 1.5)).toBe("VALIDATION_FAILED")
    // would overflow the date range: refused, never thrown
    expect(wait(["approve"], 1e16)).toBe("VALIDATION_FAILED")
    expect(wait(["approve"], 366 * 24 * 3600 * 1000)).toBe("VALIDATION_FAILED")
  })

  it("approve resumes the run: run.signal_received then run.requeued signal", () => {
    const d = awaiting()
    d.advance(500)
    const t = d.ok(RunCommand.Signal({ action: "approve", comment: "lgtm" }))
    expect(types(t)).toEqual(["run.signal_received", "run.requeued"])
    expect(payloadValue(t, "run.signal_received")).toEqual({ action: "approve", comment: "lgtm" })
    expect(payloadValue(t, "run.requeued")).toEqual({ reason: "signal", attempt: 2 })
    expect(d.run).toMatchObject({
      status: "queued",
      awaiting_input: null,
      available_at: T0 + 500,
      last_signal: { action: "approve", comment: "lgtm" }
    })
    const claimed = d.claim("L2")
    expect(payloadValue(claimed, "run.started")).toEqual({ attempt: 2, worker_id: "w1" })
  })

  it("reject and submit_input are recorded with their input", () => {
    const r = awaiting()
    expect(payloadValue(r.ok(RunCommand.Signal({ action: "reject" })), "run.signal_received")).toEqual({
      action: "reject"
    })
    const s = awaiting({ actions: ["submit_input"] })
    const t = s.ok(RunCommand.Signal({ action: "submit_input", input: { title: "Q4" } }))
    expect(payloadValue(t, "run.signal_received")).toEqual({ action: "submit_input", input: { title: "Q4" } })
    expect(s.run.last_signal).toEqual({ action: "submit_input", input: { title: "Q4" } })
  })

  it("refuses an action the wait does not offer with SIGNAL_INPUT_INVALID", () => {
    const d = awaiting({ actions: ["approve"] })
    expect(d.refused(RunCommand.Signal({ action: "reject" }))).toBe("SIGNAL_INPUT_INVALID")
    expect(d.refused(RunCommand.Signal({ action: "submit_input", input: 1 }))).toBe("SIGNAL_INPUT_INVALID")
    expect(d.run.status).toBe("awaiting_input")
  })

  it("a repeated identical signal changes nothing; a different one is refused", () => {
    const d = awaiting()
    d.ok(RunCommand.Signal({ action: "approve", input: { a: 1, b: [1, 2] }, comment: "ok" }))
    d.same(RunCommand.Signal({ action: "approve", input: { a: 1, b: [1, 2] }, comment: "ok" }))
    // whatever order the keys come in
    d.same(RunCommand.Signal({ comment: "ok", input: { b: [1, 2], a: 1 }, action: "approve" }))
    expect(d.refused(RunCommand.Signal({ action: "reject" }))).toBe("RUN_NOT_AWAITING_INPUT")
    expect(d.refused(RunCommand.Signal({ action: "approve" }))).toBe("RUN_NOT_AWAITING_INPUT")
    d.claim("L2")
    d.same(RunCommand.Signal({ action: "approve", input: { a: 1, b: [1, 2] }, comment: "ok" }))
  })

  it("recognises a repeated signal when the store returned last_signal with its keys reordered", () => {
    const d = awaiting()
    d.ok(RunCommand.Signal({ action: "approve", input: { title: "x", tags: ["a"] }, comment: "c" }))
    // what Postgres jsonb hands back: keys sorted by length, then bytewise
    const stored: RunRecord = {
      ...d.run,
      last_signal: JSON.parse('{"input":{"tags":["a"],"title":"x"},"action":"approve","comment":"c"}')
    }
    const again = RunState.transition(
      stored,
      RunCommand.Signal({ action: "approve", input: { title: "x", tags: ["a"] }, comment: "c" }),
      ctx(d.now)
    )
    expect(Either.isRight(again) && again.right._tag).toBe("NoChange")
  })

  it("refuses a signal to a run that is not waiting, or is terminal", () => {
    const q = new Driver()
    expect(q.refused(RunCommand.Signal({ action: "approve" }))).toBe("RUN_NOT_AWAITING_INPUT")
    const r = running()
    expect(r.refused(RunCommand.Signal({ action: "approve" }))).toBe("RUN_NOT_AWAITING_INPUT")
    r.ok(RunCommand.Succeed({ leaseToken: r.token, output: null }))
    expect(r.refused(RunCommand.Signal({ action: "approve" }))).toBe("RUN_ALREADY_TERMINAL")
  })

  it("times the wait out on Tick: run.limit_exceeded LIMIT_INPUT_TIMEOUT", () => {
    const d = awaiting({ actions: ["approve"], timeoutMs: 10_000 })
    d.advance(9_999)
    d.same(RunCommand.Tick())
    d.advance(1)
    const t = d.ok(RunCommand.Tick())
    expect(types(t)).toEqual(["run.limit_exceeded"])
    expect(payloadValue(t, "run.limit_exceeded")).toEqual({
      limit: "input_timeout",
      reason_code: "LIMIT_INPUT_TIMEOUT"
    })
    expect(d.run).toMatchObject({
      status: "limit_exceeded",
      error: { reason_code: "LIMIT_INPUT_TIMEOUT" },
      awaiting_input: null,
      timer_at: null,
      finished_at: T0 + 10_000
    })
  })

  it("a signal arriving after the wait timed out ends the run instead of resuming it", () => {
    const d = awaiting({ actions: ["approve"], timeoutMs: 10_000 })
    d.advance(10_000)
    const t = d.ok(RunCommand.Signal({ action: "approve" }))
    expect(types(t)).toEqual(["run.limit_exceeded"])
    expect(d.run.status).toBe("limit_exceeded")
    expect(d.run.last_signal).toBeNull()
  })

  it("never times out a wait without a timeout", () => {
    const d = awaiting({ actions: ["approve"], timeoutMs: null })
    d.advance(10 * DEFAULT_LIMITS.max_duration_ms)
    d.same(RunCommand.Tick())
  })
})

describe("cancel", () => {
  it("cancels a queued run at once", () => {
    const d = new Driver()
    d.advance(3)
    const t = d.ok(RunCommand.RequestCancel({ reason: "not needed" }))
    expect(types(t)).toEqual(["run.cancelled"])
    expect(t.events[0]!.payload).toEqual({ redacted: false, value: { reason: "not needed" } })
    expect(d.run).toMatchObject({
      status: "cancelled",
      error: { reason_code: "RUN_CANCELLED", message: "not needed" },
      finished_at: T0 + 3,
      available_at: null
    })
  })

  it("cancels a waiting run at once", () => {
    const d = awaiting({ actions: ["approve"], timeoutMs: 1000 })
    const t = d.ok(RunCommand.RequestCancel({}))
    expect(types(t)).toEqual(["run.cancelled"])
    expect(d.run).toMatchObject({
      status: "cancelled",
      awaiting_input: null,
      timer_at: null,
      error: { reason_code: "RUN_CANCELLED", message: "The run was cancelled." }
    })
  })

  it("asks the worker of a running run, which then cancels it", () => {
    const d = running()
    const t = d.ok(RunCommand.RequestCancel({ reason: "stop" }))
    expect(types(t)).toEqual(["run.cancel_requested"])
    expect(payloadValue(t, "run.cancel_requested")).toEqual({ reason: "stop" })
    expect(d.run).toMatchObject({
      status: "running",
      cancel_requested: { reason: "stop" },
      lease_token: "L1"
    })
    d.same(RunCommand.RequestCancel({ reason: "stop" }))
    d.same(RunCommand.RequestCancel({ reason: "another reason" }))
    const cancelled = d.ok(RunCommand.Cancel({ leaseToken: d.token }))
    expect(types(cancelled)).toEqual(["run.cancelled"])
    expect(payloadValue(cancelled, "run.cancelled")).toEqual({ reason: "stop" })
    expect(d.run.status).toBe("cancelled")
    d.same(RunCommand.RequestCancel({}))
  })

  it("a worker Cancel without a request is refused", () => {
    const d = running()
    expect(d.refused(RunCommand.Cancel({ leaseToken: d.token }))).toBe("RUN_NOT_RUNNING")
  })

  it("a requested cancel ends the run at the worker's next move, or when its lease runs out", () => {
    for (const move of ["start", "progress", "usage", "await", "retry"] as const) {
      const d = running()
      d.startStep("open")
      d.ok(RunCommand.RequestCancel({}))
      const token = d.token
      const cmd =
        move === "start"
          ? RunCommand.StartStep({ leaseToken: token, stepId: "s2", name: "s2", attempt: 1 })
          : move === "progress"
            ? RunCommand.Progress({ leaseToken: token, items: [{ stepId: null, kind: "note", fields: {} }] })
            : move === "usage"
              ? RunCommand.ReportUsage({ leaseToken: token, stepId: null, tokens: 1, costUsd: 0 })
              : move === "await"
                ? RunCommand.AwaitInput({ leaseToken: token, prompt: "?", actions: ["approve"] })
                : RunCommand.FinishStep({
                    leaseToken: token,
                    stepId: "open",
                    outcome: "retry_step",
                    requeue: true
                  })
      const t = d.ok(cmd)
      expect(types(t).at(-1), move).toBe("run.cancelled")
      expect(d.run.status).toBe("cancelled")
    }
    const lapsed = running()
    lapsed.ok(RunCommand.RequestCancel({}))
    lapsed.advance(30_000)
    expect(types(lapsed.ok(RunCommand.Tick()))).toEqual(["run.cancelled"])

    const taken = running()
    taken.ok(RunCommand.RequestCancel({}))
    taken.advance(30_000)
    expect(types(taken.claim("L2"))).toEqual(["run.cancelled"])
    expect(taken.run.lease_token).toBeNull()
  })

  it("refuses to cancel a run that ended otherwise", () => {
    const d = running()
    d.ok(RunCommand.Succeed({ leaseToken: d.token, output: 1 }))
    expect(d.refused(RunCommand.RequestCancel({}))).toBe("RUN_ALREADY_TERMINAL")
  })

  it("redacts the reason and flags the payload", () => {
    const q = new Driver()
    const t = q.ok(RunCommand.RequestCancel({ reason: "leaked Bearer abcdefghijklmnop" }))
    expect(t.events[0]!.payload).toEqual({ redacted: true, value: { reason: `leaked ${REDACTED}` } })
    const r = running()
    const req = r.ok(RunCommand.RequestCancel({ reason: "key_abcdefgh12:abcdefghijklmnopqrstuv" }))
    expect(req.events[0]!.payload).toEqual({ redacted: true, value: { reason: REDACTED } })
  })
})

describe("leases", () => {
  it("Tick requeues a running run whose lease expired", () => {
    const d = running()
    d.startStep("s1")
    d.advance(29_999)
    d.same(RunCommand.Tick())
    d.advance(1)
    const t = d.ok(RunCommand.Tick())
    expect(types(t)).toEqual(["run.requeued"])
    expect(payloadValue(t, "run.requeued")).toEqual({ reason: "lease_expired", attempt: 2 })
    expect(d.run).toMatchObject({
      status: "queued",
      lease_token: null,
      lease_expires_at: null,
      worker_id: null,
      open_steps: {},
      available_at: T0 + 30_000
    })
    const again = d.claim("L2")
    expect(payloadValue(again, "run.started")).toEqual({ attempt: 2, worker_id: "w1" })
  })

  it("refuses a wrong, expired or superseded lease token with LEASE_LOST", () => {
    const d = running()
    expect(d.refused(RunCommand.Succeed({ leaseToken: "nope", output: 1 }))).toBe("LEASE_LOST")
    d.advance(30_000)
    expect(d.refused(RunCommand.Succeed({ leaseToken: "L1", output: 1 }))).toBe("LEASE_LOST")
    d.claim("L2")
    expect(d.refused(RunCommand.StartStep({ leaseToken: "L1", stepId: "s", name: "s", attempt: 1 }))).toBe(
      "LEASE_LOST"
    )
    d.ok(RunCommand.StartStep({ leaseToken: "L2", stepId: "s", name: "s", attempt: 1 }))
  })

  it("refuses worker commands on runs that are not running", () => {
    const worker = (token: string) => [
      RunCommand.StartStep({ leaseToken: token, stepId: "s", name: "s", attempt: 1 }),
      RunCommand.Progress({ leaseToken: token, items: [] }),
      RunCommand.ReportUsage({ leaseToken: token, stepId: null, tokens: 1, costUsd: 0 }),
      RunCommand.FinishStep({ leaseToken: token, stepId: "s", outcome: "succeeded" }),
      RunCommand.AwaitInput({ leaseToken: token, prompt: "?", actions: ["approve"] }),
      RunCommand.Cancel({ leaseToken: token }),
      RunCommand.ExceedLimit({ leaseToken: token, limit: "max_steps" }),
      RunCommand.Succeed({ leaseToken: token, output: 1 }),
      RunCommand.Fail({ leaseToken: token, reasonCode: "HANDLER_ERROR", message: "x" })
    ]
    const queued = new Driver()
    const waiting = awaiting()
    for (const cmd of worker("L1")) {
      expect(queued.refused(cmd), cmd._tag).toBe("RUN_NOT_RUNNING")
      expect(waiting.refused(cmd), cmd._tag).toBe("RUN_NOT_RUNNING")
    }
  })
})

describe("limits", () => {
  it("max_steps: the step beyond the limit ends the run with LIMIT_MAX_STEPS", () => {
    const d = running({ max_steps: 2 })
    d.startStep("a")
    d.finishStep("a", { outcome: "succeeded" })
    d.startStep("b")
    d.finishStep("b", { outcome: "succeeded" })
    const t = d.ok(RunCommand.StartStep({ leaseToken: d.token, stepId: "c", name: "c", attempt: 1 }))
    expect(types(t)).toEqual(["run.limit_exceeded"])
    expect(payloadValue(t, "run.limit_exceeded")).toEqual({
      limit: "max_steps",
      reason_code: "LIMIT_MAX_STEPS"
    })
    expect(d.run.usage.steps).toBe(2)
    expect(d.run.status).toBe("limit_exceeded")
  })

  it("max_tokens and max_cost_usd: usage past the budget ends the run with LIMIT_BUDGET", () => {
    const tokens = running({ max_tokens: 100 })
    tokens.ok(RunCommand.ReportUsage({ leaseToken: tokens.token, stepId: null, tokens: 60, costUsd: 0 }))
    tokens.ok(RunCommand.ReportUsage({ leaseToken: tokens.token, stepId: null, tokens: 40, costUsd: 0 }))
    expect(tokens.run.status).toBe("running")
    const over = tokens.ok(
      RunCommand.ReportUsage({ leaseToken: tokens.token, stepId: null, tokens: 1, costUsd: 0 })
    )
    expect(types(over)).toEqual(["step.progress", "run.limit_exceeded"])
    expect(payloadValue(over, "run.limit_exceeded")).toEqual({
      limit: "max_tokens",
      reason_code: "LIMIT_BUDGET"
    })
    expect(tokens.run).toMatchObject({
      status: "limit_exceeded",
      usage: { tokens: 101 },
      error: { reason_code: "LIMIT_BUDGET" }
    })

    const cost = running({ max_cost_usd: 0.5 })
    cost.ok(RunCommand.ReportUsage({ leaseToken: cost.token, stepId: null, tokens: 0, costUsd: 0.5 }))
    const spent = cost.ok(
      RunCommand.ReportUsage({ leaseToken: cost.token, stepId: null, tokens: 0, costUsd: 0.01 })
    )
    expect(payloadValue(spent, "run.limit_exceeded")).toEqual({
      limit: "max_cost_usd",
      reason_code: "LIMIT_BUDGET"
    })
  })

  it("a worker may report any limit itself", () => {
    const d = running()
    const t = d.ok(RunCommand.ExceedLimit({ leaseToken: d.token, limit: "max_tokens" }))
    expect(payloadValue(t, "run.limit_exceeded")).toEqual({
      limit: "max_tokens",
      reason_code: "LIMIT_BUDGET"
    })
  })
})

describe("max_duration_ms", () => {
  const longLease = (max_duration_ms: number): Driver => {
    const d = new Driver(createParams({ limits: { max_duration_ms } }))
    d.claim("L1", 10 * max_duration_ms)
    return d
  }

  it("Tick ends a running run at its deadline with LIMIT_MAX_DURATION", () => {
    const d = longLease(60_000)
    d.advance(59_999)
    d.same(RunCommand.Tick())
    d.advance(1)
    const t = d.ok(RunCommand.Tick())
    expect(types(t)).toEqual(["run.limit_exceeded"])
    expect(payloadValue(t, "run.limit_exceeded")).toEqual({
      limit: "max_duration_ms",
      reason_code: "LIMIT_MAX_DURATION"
    })
    expect(d.run).toMatchObject({ status: "limit_exceeded", lease_token: null, finished_at: T0 + 60_000 })
  })

  it("the worker's next move after the deadline ends the run", () => {
    const start = longLease(1000)
    start.advance(1000)
    expect(
      types(start.ok(RunCommand.StartStep({ leaseToken: "L1", stepId: "s", name: "s", attempt: 1 })))
    ).toEqual(["run.limit_exceeded"])
    const finish = longLease(1000)
    finish.startStep("s")
    finish.advance(1000)
    const t = finish.finishStep("s", { outcome: "succeeded", output: 1 })
    expect(types(t)).toEqual(["step.done", "run.limit_exceeded"])
  })

  it("is paused while the run awaits input", () => {
    const d = longLease(10_000)
    expect(d.run.deadline_at).toBe(T0 + 10_000)
    d.advance(4_000)
    d.awaitInput({ actions: ["approve"] })
    // the wait is far longer than the whole duration limit
    d.advance(100_000)
    d.same(RunCommand.Tick())
    d.ok(RunCommand.Signal({ action: "approve" }))
    expect(d.run.deadline_at).toBe(T0 + 110_000)
    expect(d.run.timer_at).toBe(T0 + 110_000)
    d.claim("L2", 1_000_000)
    d.advance(5_999)
    d.same(RunCommand.Tick())
    d.advance(1)
    expect(types(d.ok(RunCommand.Tick()))).toEqual(["run.limit_exceeded"])
    expect(d.run.error?.reason_code).toBe("LIMIT_MAX_DURATION")
  })
})

describe("terminal runs", () => {
  it("Succeed records the (redacted) output; Fail records the reason", () => {
    const s = running()
    s.advance(9)
    const t = s.ok(RunCommand.Succeed({ leaseToken: s.token, output: { ok: true, secret: "s3cr3t" } }))
    expect(t.events[0]!.payload).toEqual({
      redacted: true,
      value: { output: { ok: true, secret: REDACTED } }
    })
    expect(s.run).toMatchObject({
      status: "succeeded",
      output: { ok: true, secret: REDACTED },
      error: null,
      finished_at: T0 + 9
    })

    const f = running()
    const failed = f.ok(
      RunCommand.Fail({ leaseToken: f.token, reasonCode: "HANDLER_ERROR", message: "TypeError: x" })
    )
    expect(failed.events[0]!.payload).toEqual({
      redacted: false,
      value: { reason_code: "HANDLER_ERROR", message: "TypeError: x" }
    })
    expect(f.run.error).toEqual({ reason_code: "HANDLER_ERROR", message: "TypeError: x" })
  })

  const ends: ReadonlyArray<[string, () => Driver]> = [
    [
      "succeeded",
      () => {
        const d = running()
        d.ok(RunCommand.Succeed({ leaseToken: d.token, output: 1 }))
        return d
      }
    ],
    [
      "failed",
      () => {
        const d = running()
        d.ok(RunCommand.Fail({ leaseToken: d.token, reasonCode: "HANDLER_ERROR", message: "x" }))
        return d
      }
    ],
    [
      "cancelled",
      () => {
        const d = new Driver()
        d.ok(RunCommand.RequestCancel({}))
        return d
      }
    ],
    [
      "limit_exceeded",
      () => {
        const d = awaiting({ actions: ["approve"], timeoutMs: 10 })
        d.advance(10)
        d.ok(RunCommand.Tick())
        return d
      }
    ]
  ]

  it.each(ends)("a %s run never changes again", (status, make) => {
    const d = make()
    expect(d.run.status).toBe(status)
    const before = d.run
    const commands = [
      RunCommand.Claim({ workerId: "w", leaseToken: "L9", leaseMs: 1000 }),
      RunCommand.Tick(),
      RunCommand.StartStep({ leaseToken: "L1", stepId: "s", name: "s", attempt: 1 }),
      RunCommand.Progress({ leaseToken: "L1", items: [] }),
      RunCommand.ReportUsage({ leaseToken: "L1", stepId: null, tokens: 1, costUsd: 0 }),
      RunCommand.FinishStep({ leaseToken: "L1", stepId: "s", outcome: "succeeded" }),
      RunCommand.AwaitInput({ leaseToken: "L1", prompt: "?", actions: ["approve"] }),
      RunCommand.Signal({ action: "approve" }),
      RunCommand.RequestCancel({}),
      RunCommand.Cancel({ leaseToken: "L1" }),
      RunCommand.ExceedLimit({ leaseToken: "L1", limit: "max_steps" }),
      RunCommand.Succeed({ leaseToken: "L1", output: 2 }),
      RunCommand.Fail({ leaseToken: "L1", reasonCode: "HANDLER_ERROR", message: "y" })
    ]
    for (const elapsed of [0, 1, 10 * DEFAULT_LIMITS.max_duration_ms]) {
      d.at(before.updated_at + elapsed)
      for (const cmd of commands) {
        const r = d.decide(cmd)
        if (Either.isRight(r))
          expect(r.right, `${cmd._tag} at +${elapsed}`).toEqual({ _tag: "NoChange", run: before })
        else expect(["RUN_ALREADY_TERMINAL"], `${cmd._tag} at +${elapsed}`).toContain(r.left.reason_code)
      }
    }
  })
})

describe("redaction of event payloads", () => {
  it("step output, progress, errors and signals are redacted and flagged", () => {
    const d = running()
    d.startStep("s1")
    const progress = d.ok(
      RunCommand.Progress({
        leaseToken: d.token,
        items: [
          {
            stepId: "s1",
            kind: "content_delta",
            fields: { content_delta: "use Bearer abcdefghijklmnop now" }
          },
          { stepId: "s1", kind: "content_delta", fields: { content_delta: "clean" } }
        ]
      })
    )
    expect(progress.events.map((e) => e.payload)).toEqual([
      {
        redacted: true,
        value: { step_id: "s1", kind: "content_delta", content_delta: `use ${REDACTED} now` }
      },
      { redacted: false, value: { step_id: "s1", kind: "content_delta", content_delta: "clean" } }
    ])
    const done = d.finishStep("s1", { outcome: "succeeded", output: { rows: [{ password: "p" }] } })
    expect(eventOf(done, "step.done").payload).toEqual({
      redacted: true,
      value: { step_id: "s1", name: "s1", outcome: "succeeded", output: { rows: [{ password: REDACTED }] } }
    })
    d.startStep("s2")
    const clean = d.finishStep("s2", { outcome: "succeeded", output: { rows: 1 } })
    expect(eventOf(clean, "step.done").payload.redacted).toBe(false)

    d.awaitInput({ prompt: "Token is key_abcdefgh12:abcdefghijklmnopqrstuv ok?", actions: ["submit_input"] })
    const wait = d.log.at(-1)!
    expect(wait.payload).toMatchObject({ redacted: true, value: { prompt: `Token is ${REDACTED} ok?` } })
    const signal = d.ok(
      RunCommand.Signal({ action: "submit_input", input: { authorization: "Basic x" }, comment: "fine" })
    )
    expect(eventOf(signal, "run.signal_received").payload).toEqual({
      redacted: true,
      value: { action: "submit_input", input: { authorization: REDACTED }, comment: "fine" }
    })
    expect(d.run.last_signal).toEqual({
      action: "submit_input",
      input: { authorization: REDACTED },
      comment: "fine"
    })
    expect(JSON.stringify(d.log)).not.toMatch(/abcdefghijklmnop|Basic x|"p"/)
  })

  it("a failing step's error message is redacted in both events", () => {
    const d = running()
    d.startStep("s1")
    const t = d.finishStep("s1", {
      outcome: "fail_run",
      error: { message: "401 for Bearer abcdefghijklmnop" }
    })
    for (const e of t.events) expect(e.payload.redacted, e.type).toBe(true)
    expect(payloadValue(t, "run.worker.failed")).toEqual({
      reason_code: "STEP_FAILED",
      message: `401 for ${REDACTED}`
    })
  })

  it("an error sent with a succeeded step is ignored and does not flag the payload", () => {
    const d = running()
    d.startStep("s1")
    const t = d.finishStep("s1", {
      outcome: "succeeded",
      output: 1,
      error: { message: "Bearer abcdefghijklmnop" }
    })
    expect(eventOf(t, "step.done").payload).toEqual({
      redacted: false,
      value: { step_id: "s1", name: "s1", outcome: "succeeded", output: 1 }
    })
  })
})

describe("purity and the fold", () => {
  it("never mutates the run it is given, and decides the same way twice", () => {
    const d = running({ max_tokens: 10 })
    d.startStep("s1")
    deepFreeze(d.run)
    const cmds = [
      RunCommand.ReportUsage({ leaseToken: "L1", stepId: "s1", tokens: 11, costUsd: 0 }),
      RunCommand.FinishStep({ leaseToken: "L1", stepId: "s1", outcome: "retry_step", requeue: true }),
      RunCommand.AwaitInput({ leaseToken: "L1", prompt: "?", actions: ["approve"], timeoutMs: 5 }),
      RunCommand.RequestCancel({ reason: "r" })
    ]
    for (const cmd of cmds) expect(d.decide(cmd)).toEqual(d.decide(cmd))
  })

  it("the stored run equals the fold of its log, and each patch rebuilds the next run", () => {
    const d = running({ max_steps: 3 })
    const steps: Array<() => unknown> = [
      () => d.startStep("a"),
      () => d.ok(RunCommand.ReportUsage({ leaseToken: d.token, stepId: "a", tokens: 3, costUsd: 0.1 })),
      () => d.finishStep("a", { outcome: "retry_step", requeue: true, retryInMs: 10 }),
      () => d.advance(10).claim("L2"),
      () => d.startStep("a", 2),
      () => d.finishStep("a", { outcome: "succeeded", output: "A" }),
      () => d.awaitInput({ actions: ["approve"], timeoutMs: 1000 }),
      () => d.advance(300).ok(RunCommand.Signal({ action: "approve" })),
      () => d.claim("L3"),
      () => d.ok(RunCommand.Succeed({ leaseToken: d.token, output: { done: true } }))
    ]
    for (const step of steps) {
      const before = d.run
      step()
      const last = d.run
      expect(projection(d.folded())).toEqual(projection(last))
      expect(last.version).toBe(before.version + 1)
    }
    expect(d.log.map((e) => e.seq)).toEqual(d.log.map((_, i) => i + 1))
    expect(d.run.last_seq).toBe(d.log.length)
  })
})
