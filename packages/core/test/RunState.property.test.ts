/**
 * Property-based and model-based tests of the run state machine: random
 * command sequences (with time passing, wrong lease tokens, unknown steps and
 * small limits) must keep every invariant of SPEC §1–§3.
 */
import { Either, Schema } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import type { JsonObject, JsonValue } from "../src/Json.js"
import type { LimitName, Limits } from "../src/Limits.js"
import { DEFAULT_REDACTION_POLICY } from "../src/Redaction.js"
import { isTerminal, type RunRecord, RunRecord as RunRecordSchema, type RunStatus } from "../src/Run.js"
import {
  EVENT_TYPES,
  EventBody,
  type EventRow,
  type FailureReasonCode,
  isTerminalEventType,
  type SignalAction,
  type StepError,
  type StepOutcome
} from "../src/RunEvent.js"
import * as RunState from "../src/RunState.js"
import { createParams, deepFreeze, projection, RunCommand, T0 } from "./fixtures/runs.js"

const NUM_RUNS = 1000

const isRunRecord = Schema.is(RunRecordSchema)
const isEventBody = Schema.is(EventBody)

// ---------------------------------------------------------------------------
// command specs: data that fast-check can print and shrink, resolved against
// the run's current state (lease token, open steps) when applied

type TokenPick = "current" | "stale" | "bogus"
type StepPick =
  | { readonly kind: "open" }
  | { readonly kind: "retried" }
  | { readonly kind: "id"; readonly id: string }
type AttemptPick = "first" | "next" | number

type Spec =
  | { readonly tag: "Claim"; readonly workerId: string; readonly leaseMs: number }
  | { readonly tag: "Tick" }
  | {
      readonly tag: "StartStep"
      readonly token: TokenPick
      readonly step: StepPick
      readonly attempt: AttemptPick
    }
  | {
      readonly tag: "Progress"
      readonly token: TokenPick
      readonly items: ReadonlyArray<{ step: StepPick | null; kind: string; fields: JsonObject }>
    }
  | {
      readonly tag: "ReportUsage"
      readonly token: TokenPick
      readonly step: StepPick | null
      readonly tokens: number
      readonly costUsd: number
    }
  | {
      readonly tag: "FinishStep"
      readonly token: TokenPick
      readonly step: StepPick
      readonly outcome: StepOutcome
      readonly output?: JsonValue
      readonly error?: StepError
      readonly retryInMs?: number
      readonly requeue?: boolean
    }
  | {
      readonly tag: "AwaitInput"
      readonly token: TokenPick
      readonly prompt: string
      readonly actions: ReadonlyArray<SignalAction>
      readonly inputSchema?: JsonObject
      readonly timeoutMs?: number | null
    }
  | {
      readonly tag: "Signal"
      readonly action: SignalAction
      readonly input?: JsonValue
      readonly comment?: string
    }
  | { readonly tag: "RequestCancel"; readonly reason?: string }
  | { readonly tag: "Cancel"; readonly token: TokenPick }
  | { readonly tag: "ExceedLimit"; readonly token: TokenPick; readonly limit: LimitName }
  | { readonly tag: "Succeed"; readonly token: TokenPick; readonly output: JsonValue }
  | {
      readonly tag: "Fail"
      readonly token: TokenPick
      readonly reasonCode: FailureReasonCode
      readonly message: string
    }

interface Step {
  readonly advanceMs: number
  readonly spec: Spec
}

const tokenArb: fc.Arbitrary<TokenPick> = fc.oneof(
  { arbitrary: fc.constant("current" as const), weight: 8 },
  { arbitrary: fc.constant("stale" as const), weight: 1 },
  { arbitrary: fc.constant("bogus" as const), weight: 1 }
)
// Step ids named like Object.prototype members must behave like any other id.
const stepIdArb = fc.constantFrom("fetch", "summarize", "publish", "constructor", "__proto__", "toString")
const stepArb: fc.Arbitrary<StepPick> = fc.oneof(
  { arbitrary: fc.constant({ kind: "open" as const }), weight: 5 },
  { arbitrary: fc.constant({ kind: "retried" as const }), weight: 2 },
  { arbitrary: stepIdArb.map((id) => ({ kind: "id" as const, id })), weight: 3 }
)
const attemptArb: fc.Arbitrary<AttemptPick> = fc.oneof(
  { arbitrary: fc.constant("first" as const), weight: 5 },
  { arbitrary: fc.constant("next" as const), weight: 4 },
  { arbitrary: fc.integer({ min: -1, max: 5 }), weight: 1 }
)
/** User data, sometimes with something the default policy removes. */
const userJsonArb: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constantFrom<JsonValue>(
    null,
    1,
    "plain",
    { docs: ["a", "b"] },
    { password: "hunter2" },
    { nested: [{ api_key: "k" }] },
    "call with Bearer abcdefghijklmnop",
    "key_abcdefgh12:abcdefghijklmnopqrstuv"
  ),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>
)
const textArb = fc.constantFrom("", "boom", "leaked Bearer abcdefghijklmnop", "timeout")
const actionArb = fc.constantFrom<SignalAction>("approve", "reject", "submit_input")

const specArb: fc.Arbitrary<Spec> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      tag: fc.constant("Claim" as const),
      workerId: fc.constantFrom("w1", "w2"),
      leaseMs: fc.oneof(
        { weight: 1, arbitrary: fc.constant(50) },
        { weight: 2, arbitrary: fc.constant(2_000) },
        { weight: 5, arbitrary: fc.constant(60_000) }
      )
    })
  },
  { weight: 3, arbitrary: fc.constant({ tag: "Tick" as const }) },
  {
    weight: 8,
    arbitrary: fc.record({
      tag: fc.constant("StartStep" as const),
      token: tokenArb,
      step: fc.oneof(
        stepArb,
        stepIdArb.map((id) => ({ kind: "id" as const, id }))
      ),
      attempt: attemptArb
    })
  },
  {
    weight: 3,
    arbitrary: fc.record({
      tag: fc.constant("Progress" as const),
      token: tokenArb,
      items: fc.array(
        fc.record({
          step: fc.option(stepArb, { nil: null }),
          kind: fc.constantFrom("content_delta", "tool_call", "usage"),
          fields: fc.record({ content_delta: fc.oneof(textArb, fc.string({ maxLength: 5 })) })
        }),
        { maxLength: 2 }
      )
    })
  },
  {
    weight: 4,
    arbitrary: fc.record({
      tag: fc.constant("ReportUsage" as const),
      token: tokenArb,
      step: fc.option(stepArb, { nil: null }),
      tokens: fc.oneof(fc.integer({ min: 0, max: 120 }), fc.constantFrom(-1, 1.5)),
      costUsd: fc.constantFrom(0, 0.01, 0.25, 0.6, -0.5)
    })
  },
  {
    weight: 10,
    arbitrary: fc.record(
      {
        tag: fc.constant("FinishStep" as const),
        token: tokenArb,
        step: fc.oneof(
          { arbitrary: fc.constant({ kind: "open" as const }), weight: 8 },
          { arbitrary: stepArb, weight: 2 }
        ),
        outcome: fc.constantFrom<StepOutcome>(
          "succeeded",
          "succeeded",
          "retry_step",
          "retry_step",
          "fail_run"
        ),
        output: userJsonArb,
        error: fc.record({ message: textArb }),
        retryInMs: fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.constant(-5)),
        requeue: fc.boolean()
      },
      { requiredKeys: ["tag", "token", "step", "outcome"] }
    )
  },
  {
    weight: 3,
    arbitrary: fc.record(
      {
        tag: fc.constant("AwaitInput" as const),
        token: tokenArb,
        prompt: textArb,
        actions: fc.oneof(
          { weight: 9, arbitrary: fc.uniqueArray(actionArb, { minLength: 1, maxLength: 3 }) },
          { weight: 1, arbitrary: fc.constantFrom<SignalAction[]>([], ["approve", "approve"]) }
        ),
        inputSchema: fc.constant({ type: "object" }),
        timeoutMs: fc.oneof(fc.constant(null), fc.integer({ min: 50, max: 5_000 }), fc.constant(0))
      },
      { requiredKeys: ["tag", "token", "prompt", "actions"] }
    )
  },
  {
    weight: 5,
    arbitrary: fc.record(
      {
        tag: fc.constant("Signal" as const),
        action: actionArb,
        input: fc.constantFrom<JsonValue>({ title: "Q4" }, { token: "t" }, 1),
        comment: fc.constantFrom("ok", "Bearer abcdefghijklmnop")
      },
      { requiredKeys: ["tag", "action"] }
    )
  },
  {
    weight: 1,
    arbitrary: fc.record(
      { tag: fc.constant("RequestCancel" as const), reason: textArb },
      { requiredKeys: ["tag"] }
    )
  },
  { weight: 1, arbitrary: fc.record({ tag: fc.constant("Cancel" as const), token: tokenArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      tag: fc.constant("ExceedLimit" as const),
      token: tokenArb,
      limit: fc.constantFrom<LimitName>(
        "max_steps",
        "max_duration_ms",
        "input_timeout",
        "max_tokens",
        "max_cost_usd"
      )
    })
  },
  {
    weight: 1,
    arbitrary: fc.record({ tag: fc.constant("Succeed" as const), token: tokenArb, output: userJsonArb })
  },
  {
    weight: 1,
    arbitrary: fc.record({
      tag: fc.constant("Fail" as const),
      token: tokenArb,
      reasonCode: fc.constantFrom<FailureReasonCode>("HANDLER_ERROR", "HANDLER_NOT_FOUND", "STEP_FAILED"),
      message: textArb
    })
  }
)

const advanceArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant(0) },
  { weight: 5, arbitrary: fc.integer({ min: 1, max: 50 }) },
  { weight: 2, arbitrary: fc.integer({ min: 50, max: 1_000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 20_000 }) }
)

const stepsArb: fc.Arbitrary<ReadonlyArray<Step>> = fc.array(
  fc.record({ advanceMs: advanceArb, spec: specArb }),
  {
    minLength: 1,
    maxLength: 80,
    size: "max"
  }
)

/** Small limits, so that every limit is actually reached. */
const limitsArb: fc.Arbitrary<Limits> = fc.record({
  max_steps: fc.integer({ min: 1, max: 5 }),
  max_duration_ms: fc.oneof(
    { weight: 1, arbitrary: fc.integer({ min: 500, max: 5_000 }) },
    { weight: 3, arbitrary: fc.integer({ min: 20_000, max: 200_000 }) }
  ),
  max_step_attempts: fc.integer({ min: 1, max: 4 }),
  input_timeout_ms: fc.option(fc.integer({ min: 100, max: 10_000 }), { nil: null }),
  max_tokens: fc.option(fc.integer({ min: 0, max: 300 }), { nil: null }),
  max_cost_usd: fc.option(fc.constantFrom(0, 0.3, 1), { nil: null })
})

const createArb = fc.record({
  limits: limitsArb,
  input: userJsonArb,
  metadata: fc.constantFrom({}, { env: "prod" }, { env: "prod", api_key: "k", n: 1 })
})

// ---------------------------------------------------------------------------
// the simulation

interface Sim {
  run: RunRecord
  now: number
  /** Every lease token ever handed to Claim, oldest first. */
  readonly tokens: string[]
  /** The attempt each step id last started with. */
  readonly attempts: Map<string, number>
  retried: { readonly stepId: string; readonly attempt: number } | null
}

const pickToken = (s: Sim, pick: TokenPick): string => {
  switch (pick) {
    case "current":
      return s.run.lease_token ?? s.tokens.at(-1) ?? "never-issued"
    case "stale":
      return s.tokens.at(-2) ?? "never-issued"
    case "bogus":
      return "bogus-token"
  }
}

const pickStep = (s: Sim, pick: StepPick): string => {
  switch (pick.kind) {
    case "open":
      return Object.keys(s.run.open_steps)[0] ?? "fetch"
    case "retried":
      return s.retried?.stepId ?? "fetch"
    case "id":
      return pick.id
  }
}

const toCommand = (s: Sim, spec: Spec): RunState.RunCommand => {
  switch (spec.tag) {
    case "Claim": {
      const leaseToken = `lease-${s.tokens.length + 1}`
      s.tokens.push(leaseToken)
      return RunCommand.Claim({ workerId: spec.workerId, leaseToken, leaseMs: spec.leaseMs })
    }
    case "Tick":
      return RunCommand.Tick()
    case "StartStep": {
      const stepId =
        spec.step.kind === "retried" && s.retried !== null ? s.retried.stepId : pickStep(s, spec.step)
      const attempt =
        spec.attempt === "first"
          ? 1
          : spec.attempt === "next"
            ? (s.retried?.stepId === stepId ? s.retried.attempt : (s.attempts.get(stepId) ?? 0)) + 1
            : spec.attempt
      return RunCommand.StartStep({
        leaseToken: pickToken(s, spec.token),
        stepId,
        name: `step:${stepId}`,
        attempt
      })
    }
    case "Progress":
      return RunCommand.Progress({
        leaseToken: pickToken(s, spec.token),
        items: spec.items.map((i) => ({
          stepId: i.step === null ? null : pickStep(s, i.step),
          kind: i.kind,
          fields: i.fields
        }))
      })
    case "ReportUsage":
      return RunCommand.ReportUsage({
        leaseToken: pickToken(s, spec.token),
        stepId: spec.step === null ? null : pickStep(s, spec.step),
        tokens: spec.tokens,
        costUsd: spec.costUsd
      })
    case "FinishStep": {
      const { tag: _t, token, step, ...rest } = spec
      return RunCommand.FinishStep({ leaseToken: pickToken(s, token), stepId: pickStep(s, step), ...rest })
    }
    case "AwaitInput": {
      const { tag: _t, token, ...rest } = spec
      return RunCommand.AwaitInput({ leaseToken: pickToken(s, token), ...rest })
    }
    case "Signal": {
      const { tag: _t, ...rest } = spec
      return RunCommand.Signal(rest)
    }
    case "RequestCancel": {
      const { tag: _t, ...rest } = spec
      return RunCommand.RequestCancel(rest)
    }
    case "Cancel":
      return RunCommand.Cancel({ leaseToken: pickToken(s, spec.token) })
    case "ExceedLimit":
      return RunCommand.ExceedLimit({ leaseToken: pickToken(s, spec.token), limit: spec.limit })
    case "Succeed":
      return RunCommand.Succeed({ leaseToken: pickToken(s, spec.token), output: spec.output })
    case "Fail":
      return RunCommand.Fail({
        leaseToken: pickToken(s, spec.token),
        reasonCode: spec.reasonCode,
        message: spec.message
      })
  }
}

/** What the whole property run reached, to prove the generator hits every corner. */
const seen = {
  statuses: new Set<RunStatus>(),
  eventTypes: new Set<string>(),
  terminalCodes: new Set<string>(),
  requeueReasons: new Set<string>(),
  rejections: new Set<string>(),
  noChange: new Set<string>()
}

const checkRecordShape = (r: RunRecord): void => {
  expect(isRunRecord(r)).toBe(true)
  // never running without a lease; the lease belongs to running runs only
  if (r.status === "running") {
    expect(r.lease_token).not.toBeNull()
    expect(r.lease_expires_at).not.toBeNull()
    expect(r.worker_id).not.toBeNull()
  } else {
    expect(r.lease_token).toBeNull()
    expect(r.lease_expires_at).toBeNull()
  }
  // a queued run is claimable from some time on; no other run is
  if (r.status === "queued") expect(r.available_at).not.toBeNull()
  else expect(r.available_at).toBeNull()
  expect(r.status === "awaiting_input").toBe(r.awaiting_input !== null)
  expect(r.usage.steps).toBeLessThanOrEqual(r.limits.max_steps)
  for (const open of Object.values(r.open_steps))
    expect(open.attempt).toBeLessThanOrEqual(r.limits.max_step_attempts)
  if (isTerminal(r.status)) {
    expect(r.finished_at).not.toBeNull()
    expect(r.timer_at).toBeNull()
    expect(r.worker_id).toBeNull()
    expect(r.open_steps).toEqual({})
    expect(r.error === null).toBe(r.status === "succeeded")
  } else {
    expect(r.finished_at).toBeNull()
  }
}

const runSequence = (
  created: { limits: Limits; input: JsonValue; metadata: Record<string, string | number | boolean> },
  steps: ReadonlyArray<Step>
): void => {
  const params = createParams({ input: created.input, metadata: created.metadata, limits: created.limits })
  const ctxAt = (now: number) => ({ now, redaction: DEFAULT_REDACTION_POLICY })
  const start = RunState.create(params, ctxAt(T0))
  const log: EventRow[] = [...start.events]
  const sim: Sim = { run: start.record, now: T0, tokens: [], attempts: new Map(), retried: null }
  let transitions = 0
  let incremental = RunState.fold(RunState.initialRecord({ ...params, input: start.record.input }, T0), log)
  expect(projection(incremental)).toEqual(projection(sim.run))
  checkRecordShape(sim.run)

  for (const { advanceMs, spec } of steps) {
    sim.now += advanceMs
    const prev = deepFreeze(sim.run)
    const cmd = toCommand(sim, spec)
    const decided = RunState.transition(prev, cmd, ctxAt(sim.now))
    // pure: the same inputs give the same decision
    expect(RunState.transition(prev, cmd, ctxAt(sim.now))).toEqual(decided)

    if (Either.isLeft(decided)) {
      seen.rejections.add(decided.left.reason_code)
      continue
    }
    const d = decided.right
    if (d._tag === "NoChange") {
      seen.noChange.add(cmd._tag)
      expect(d.run).toBe(prev)
      continue
    }
    // terminal is final: nothing after a terminal status is a transition
    expect(isTerminal(prev.status), `${cmd._tag} changed a ${prev.status} run`).toBe(false)
    transitions++

    // events: contiguous seqs after the previous last_seq, stamped now, well-formed
    expect(d.events.length).toBeGreaterThan(0)
    expect(d.events.map((e) => e.seq)).toEqual(d.events.map((_, i) => prev.last_seq + i + 1))
    for (const e of d.events) {
      expect(e.run_id).toBe(prev.id)
      expect(e.timestamp).toBe(sim.now)
      expect(isEventBody(e), `${e.type} ${JSON.stringify(e.payload)}`).toBe(true)
      seen.eventTypes.add(e.type)
      if (e.type === "run.requeued") seen.requeueReasons.add((e.payload.value as { reason: string }).reason)
    }
    const terminalEvents = d.events.filter((e) => isTerminalEventType(e.type))
    expect(terminalEvents.length).toBeLessThanOrEqual(1)
    if (terminalEvents.length === 1) expect(d.events.at(-1)).toBe(terminalEvents[0])

    // the patch rebuilds `next` from the previous record
    expect({ ...prev, ...d.patch, version: prev.version + 1 }).toEqual(d.next)
    expect(d.next.version).toBe(prev.version + 1)
    expect(d.next.last_seq).toBe(d.events.at(-1)!.seq)
    // the projection is the fold of the log, step by step
    incremental = RunState.fold(incremental, d.events)
    expect(projection(incremental)).toEqual(projection(d.next))
    checkRecordShape(d.next)

    for (const e of d.events) {
      if (e.type === "step.started") {
        const v = e.payload.value as { step_id: string; attempt: number }
        sim.attempts.set(v.step_id, v.attempt)
      }
      if (e.type === "step.done" && (e.payload.value as { outcome: string }).outcome === "retry_step") {
        const stepId = (e.payload.value as { step_id: string }).step_id
        sim.retried = { stepId, attempt: sim.attempts.get(stepId) ?? 1 }
      }
    }
    log.push(...d.events)
    sim.run = d.next
  }

  const final = sim.run
  const n = log.length
  expect(log.map((e) => e.seq)).toEqual(Array.from({ length: n }, (_, i) => i + 1))
  expect(final.last_seq).toBe(n)
  expect(final.version).toBe(transitions + 1)
  const terminalEvents = log.filter((e) => isTerminalEventType(e.type))
  if (isTerminal(final.status)) {
    expect(terminalEvents).toHaveLength(1)
    expect(log.at(-1)).toBe(terminalEvents[0])
    const v = terminalEvents[0]!.payload.value as { reason_code?: string }
    seen.terminalCodes.add(v.reason_code ?? terminalEvents[0]!.type)
  } else {
    expect(terminalEvents).toHaveLength(0)
  }
  const folded = RunState.fold(RunState.initialRecord({ ...params, input: start.record.input }, T0), log)
  expect(projection(folded)).toEqual(projection(final))
  seen.statuses.add(final.status)
}

describe("RunState properties", () => {
  it(`keeps every invariant over ${NUM_RUNS} random command sequences`, () => {
    fc.assert(
      fc.property(createArb, stepsArb, (created, steps) => {
        runSequence(created, steps)
      }),
      { numRuns: NUM_RUNS }
    )
    // The generator reaches every corner of the machine (else the property proves little).
    expect([...seen.statuses].sort()).toEqual(
      ["awaiting_input", "cancelled", "failed", "limit_exceeded", "queued", "running", "succeeded"].sort()
    )
    expect([...seen.eventTypes].sort()).toEqual([...EVENT_TYPES].filter((t) => t !== "run.queued").sort())
    expect([...seen.requeueReasons].sort()).toEqual(["lease_expired", "retry", "signal"])
    for (const code of [
      "LIMIT_MAX_STEPS",
      "LIMIT_MAX_DURATION",
      "LIMIT_INPUT_TIMEOUT",
      "LIMIT_BUDGET",
      "STEP_FAILED",
      "STEP_RETRIES_EXHAUSTED",
      "HANDLER_ERROR",
      "run.cancelled",
      "run.worker.succeeded"
    ])
      expect([...seen.terminalCodes], code).toContain(code)
    for (const code of [
      "LEASE_LOST",
      "RUN_NOT_RUNNING",
      "RUN_ALREADY_TERMINAL",
      "RUN_NOT_AWAITING_INPUT",
      "STEP_MISMATCH",
      "SIGNAL_INPUT_INVALID",
      "VALIDATION_FAILED"
    ])
      expect(seen.rejections, code).toContain(code)
  })
})

// ---------------------------------------------------------------------------
// Model-based: a small model of SPEC §2 predicts each command's outcome

const MODEL_LIMITS: Partial<Limits> = {
  max_steps: 3,
  max_step_attempts: 2,
  max_duration_ms: 10 ** 9,
  input_timeout_ms: null,
  max_tokens: null,
  max_cost_usd: null
}
const LEASE_MS = 10_000

interface Model {
  now: number
  status: RunStatus
  attempts: number
  steps: number
  /** step id → attempt, in start order */
  open: Map<string, number>
  retried: { readonly id: string; readonly attempt: number } | null
  cancelRequested: boolean
  actions: ReadonlyArray<SignalAction> | null
  expiresAt: number | null
  availableAt: number | null
  leaseExpiresAt: number | null
  lastSignal: SignalAction | null
  nextStep: number
}

interface Real {
  run: RunRecord
  now: number
  log: EventRow[]
  claims: number
}

type Expected =
  | { readonly kind: "transition"; readonly types: ReadonlyArray<string> }
  | { readonly kind: "no-change" }
  | { readonly kind: "rejected"; readonly code: string }

const moves = (...types: string[]): Expected => ({ kind: "transition", types })
const NO_CHANGE: Expected = { kind: "no-change" }
const refusedWith = (code: string): Expected => ({ kind: "rejected", code })

const leaseLive = (m: Model) =>
  m.status === "running" && m.leaseExpiresAt !== null && m.leaseExpiresAt > m.now
const leaseLapsed = (m: Model) =>
  m.status === "running" && m.leaseExpiresAt !== null && m.leaseExpiresAt <= m.now

const end = (m: Model, status: RunStatus) => {
  m.status = status
  m.open.clear()
  m.actions = null
  m.expiresAt = null
  m.availableAt = null
  m.leaseExpiresAt = null
}
const requeue = (m: Model, availableAt: number) => {
  m.status = "queued"
  m.attempts++
  m.open.clear()
  m.availableAt = availableAt
  m.leaseExpiresAt = null
}

const applyReal = (r: Real, cmd: RunState.RunCommand, expected: Expected, label: string): void => {
  const d = RunState.transition(r.run, cmd, { now: r.now, redaction: DEFAULT_REDACTION_POLICY })
  const got = Either.isLeft(d)
    ? refusedWith(d.left.reason_code)
    : d.right._tag === "NoChange"
      ? NO_CHANGE
      : moves(...d.right.events.map((e) => e.type))
  expect(got, label).toEqual(expected)
  if (Either.isRight(d) && d.right._tag === "Transition") {
    r.run = d.right.next
    r.log.push(...d.right.events)
  }
}

/** The real run agrees with the model. */
const conform = (m: Model, r: Real, label: string) => {
  expect(r.run.status, label).toBe(m.status)
  expect(r.run.usage.attempts, label).toBe(m.attempts)
  expect(r.run.usage.steps, label).toBe(m.steps)
  expect(
    Object.entries(r.run.open_steps).map(([id, s]) => [id, s.attempt]),
    label
  ).toEqual([...m.open.entries()])
  expect(r.run.cancel_requested !== null, label).toBe(m.cancelRequested)
  expect(r.run.awaiting_input?.actions ?? null, label).toEqual(m.actions)
  expect(r.run.awaiting_input?.expires_at ?? null, label).toBe(m.expiresAt)
  expect(r.run.available_at, label).toBe(m.availableAt)
  expect(r.run.lease_expires_at, label).toBe(m.leaseExpiresAt)
  expect(r.run.last_seq, label).toBe(r.log.length)
}

class Cmd implements fc.Command<Model, Real> {
  constructor(
    readonly name: string,
    readonly when: (m: Readonly<Model>) => boolean,
    readonly step: (m: Model, r: Real) => void
  ) {}
  check(m: Readonly<Model>): boolean {
    return this.when(m)
  }
  run(m: Model, r: Real): void {
    this.step(m, r)
    conform(m, r, this.name)
  }
  toString(): string {
    return this.name
  }
}

const always = () => true
const token = (r: Real) => r.run.lease_token ?? "none"

const advance = (ms: number) =>
  new Cmd(`Advance(${ms})`, always, (m, r) => {
    m.now += ms
    r.now += ms
  })

const claim = new Cmd("Claim", always, (m, r) => {
  r.claims++
  const cmd = RunCommand.Claim({ workerId: "w", leaseToken: `L${r.claims}`, leaseMs: LEASE_MS })
  if (m.status === "queued" && m.availableAt !== null && m.availableAt <= m.now) {
    applyReal(r, cmd, moves("run.started"), "Claim")
    m.status = "running"
    m.availableAt = null
    m.leaseExpiresAt = m.now + LEASE_MS
  } else if (leaseLapsed(m)) {
    if (m.cancelRequested) {
      applyReal(r, cmd, moves("run.cancelled"), "Claim")
      end(m, "cancelled")
    } else {
      applyReal(r, cmd, moves("run.requeued", "run.started"), "Claim")
      requeue(m, m.now)
      m.status = "running"
      m.availableAt = null
      m.leaseExpiresAt = m.now + LEASE_MS
    }
  } else applyReal(r, cmd, NO_CHANGE, "Claim")
})

const tick = new Cmd("Tick", always, (m, r) => {
  const cmd = RunCommand.Tick()
  if (m.status === "awaiting_input" && m.expiresAt !== null && m.expiresAt <= m.now) {
    applyReal(r, cmd, moves("run.limit_exceeded"), "Tick")
    end(m, "limit_exceeded")
  } else if (leaseLapsed(m)) {
    if (m.cancelRequested) {
      applyReal(r, cmd, moves("run.cancelled"), "Tick")
      end(m, "cancelled")
    } else {
      applyReal(r, cmd, moves("run.requeued"), "Tick")
      requeue(m, m.now)
    }
  } else applyReal(r, cmd, NO_CHANGE, "Tick")
})

const startStep = new Cmd("StartStep", leaseLive, (m, r) => {
  const id = `s${m.nextStep++}`
  const cmd = RunCommand.StartStep({ leaseToken: token(r), stepId: id, name: id, attempt: 1 })
  if (m.cancelRequested) {
    applyReal(r, cmd, moves("run.cancelled"), "StartStep")
    end(m, "cancelled")
  } else if (m.steps >= 3) {
    applyReal(r, cmd, moves("run.limit_exceeded"), "StartStep")
    end(m, "limit_exceeded")
  } else {
    applyReal(r, cmd, moves("step.started"), "StartStep")
    m.steps++
    m.open.set(id, 1)
  }
})

const restartStep = new Cmd(
  "RestartRetriedStep",
  (m) => leaseLive(m) && m.retried !== null && !m.open.has(m.retried.id),
  (m, r) => {
    const { id, attempt } = m.retried!
    const cmd = RunCommand.StartStep({ leaseToken: token(r), stepId: id, name: id, attempt: attempt + 1 })
    if (m.cancelRequested) {
      applyReal(r, cmd, moves("run.cancelled"), "RestartRetriedStep")
      end(m, "cancelled")
    } else {
      // attempts beyond the first never count as a new step
      applyReal(r, cmd, moves("step.started"), "RestartRetriedStep")
      m.open.set(id, attempt + 1)
      m.retried = null
    }
  }
)

const firstOpen = (m: Readonly<Model>) => [...m.open.entries()][0]

const finishOk = new Cmd(
  "FinishStep(succeeded)",
  (m) => leaseLive(m) && m.open.size > 0,
  (m, r) => {
    const [id] = firstOpen(m)!
    const cmd = RunCommand.FinishStep({ leaseToken: token(r), stepId: id, outcome: "succeeded", output: id })
    if (m.cancelRequested) {
      applyReal(r, cmd, moves("step.done", "run.cancelled"), "FinishStep(succeeded)")
      end(m, "cancelled")
    } else {
      applyReal(r, cmd, moves("step.done"), "FinishStep(succeeded)")
      m.open.delete(id)
    }
  }
)

const retry = (requeueRun: boolean, retryInMs: number) =>
  new Cmd(
    `FinishStep(retry_step, requeue=${requeueRun}, ${retryInMs} ms)`,
    (m) => leaseLive(m) && m.open.size > 0,
    (m, r) => {
      const [id, attempt] = firstOpen(m)!
      const cmd = RunCommand.FinishStep({
        leaseToken: token(r),
        stepId: id,
        outcome: "retry_step",
        retryInMs,
        requeue: requeueRun
      })
      const label = `retry ${id}#${attempt}`
      if (attempt >= 2) {
        applyReal(r, cmd, moves("step.done", "run.worker.failed"), label)
        expect(r.run.error?.reason_code).toBe("STEP_RETRIES_EXHAUSTED")
        end(m, "failed")
      } else if (m.cancelRequested) {
        applyReal(r, cmd, moves("step.done", "run.cancelled"), label)
        end(m, "cancelled")
      } else if (requeueRun) {
        applyReal(r, cmd, moves("step.done", "run.requeued"), label)
        m.retried = { id, attempt }
        requeue(m, m.now + retryInMs)
      } else {
        applyReal(r, cmd, moves("step.done"), label)
        m.open.delete(id)
        m.retried = { id, attempt }
      }
    }
  )

const failStep = new Cmd(
  "FinishStep(fail_run)",
  (m) => leaseLive(m) && m.open.size > 0,
  (m, r) => {
    const [id] = firstOpen(m)!
    const cmd = RunCommand.FinishStep({ leaseToken: token(r), stepId: id, outcome: "fail_run" })
    applyReal(r, cmd, moves("step.done", "run.worker.failed"), "FinishStep(fail_run)")
    expect(r.run.error?.reason_code).toBe("STEP_FAILED")
    end(m, "failed")
  }
)

const awaitInput = (actions: ReadonlyArray<SignalAction>, timeoutMs: number | null) =>
  new Cmd(`AwaitInput(${actions.join("|")}, ${timeoutMs})`, leaseLive, (m, r) => {
    const cmd = RunCommand.AwaitInput({ leaseToken: token(r), prompt: "?", actions, timeoutMs })
    if (m.cancelRequested) {
      applyReal(r, cmd, moves("run.cancelled"), "AwaitInput")
      end(m, "cancelled")
    } else {
      applyReal(r, cmd, moves("run.awaiting_input"), "AwaitInput")
      m.status = "awaiting_input"
      m.actions = actions
      m.expiresAt = timeoutMs === null ? null : m.now + timeoutMs
      m.leaseExpiresAt = null
    }
  })

const signal = (action: SignalAction) =>
  new Cmd(`Signal(${action})`, always, (m, r) => {
    const cmd = RunCommand.Signal({ action })
    if (m.status === "awaiting_input") {
      if (m.expiresAt !== null && m.expiresAt <= m.now) {
        applyReal(r, cmd, moves("run.limit_exceeded"), "Signal")
        end(m, "limit_exceeded")
      } else if (m.actions!.includes(action)) {
        applyReal(r, cmd, moves("run.signal_received", "run.requeued"), "Signal")
        m.lastSignal = action
        m.actions = null
        m.expiresAt = null
        requeue(m, m.now)
      } else applyReal(r, cmd, refusedWith("SIGNAL_INPUT_INVALID"), "Signal")
    } else if (m.lastSignal === action) applyReal(r, cmd, NO_CHANGE, "Signal")
    else if (isTerminal(m.status)) applyReal(r, cmd, refusedWith("RUN_ALREADY_TERMINAL"), "Signal")
    else applyReal(r, cmd, refusedWith("RUN_NOT_AWAITING_INPUT"), "Signal")
  })

const requestCancel = new Cmd("RequestCancel", always, (m, r) => {
  const cmd = RunCommand.RequestCancel({ reason: "stop" })
  if (m.status === "cancelled") applyReal(r, cmd, NO_CHANGE, "RequestCancel")
  else if (isTerminal(m.status)) applyReal(r, cmd, refusedWith("RUN_ALREADY_TERMINAL"), "RequestCancel")
  else if (m.status === "running") {
    if (m.cancelRequested) applyReal(r, cmd, NO_CHANGE, "RequestCancel")
    else {
      applyReal(r, cmd, moves("run.cancel_requested"), "RequestCancel")
      m.cancelRequested = true
    }
  } else {
    applyReal(r, cmd, moves("run.cancelled"), "RequestCancel")
    end(m, "cancelled")
  }
})

const workerCancel = new Cmd(
  "Cancel",
  (m) => leaseLive(m) && m.cancelRequested,
  (m, r) => {
    applyReal(r, RunCommand.Cancel({ leaseToken: token(r) }), moves("run.cancelled"), "Cancel")
    end(m, "cancelled")
  }
)

const succeed = new Cmd("Succeed", leaseLive, (m, r) => {
  applyReal(
    r,
    RunCommand.Succeed({ leaseToken: token(r), output: "done" }),
    moves("run.worker.succeeded"),
    "Succeed"
  )
  end(m, "succeeded")
})

const intruder = new Cmd("Succeed(wrong token)", always, (m, r) => {
  const expected = isTerminal(m.status)
    ? refusedWith("RUN_ALREADY_TERMINAL")
    : m.status === "running"
      ? refusedWith("LEASE_LOST")
      : refusedWith("RUN_NOT_RUNNING")
  applyReal(r, RunCommand.Succeed({ leaseToken: "intruder", output: 1 }), expected, "intruder")
})

const lapsedWorker = new Cmd("StartStep(lapsed lease)", leaseLapsed, (_m, r) => {
  const cmd = RunCommand.StartStep({ leaseToken: token(r), stepId: "late", name: "late", attempt: 1 })
  applyReal(r, cmd, refusedWith("LEASE_LOST"), "lapsed")
})

const modelCommands = [
  fc.integer({ min: 1, max: 15_000 }).map(advance),
  fc.constant(claim),
  fc.constant(claim),
  fc.constant(tick),
  fc.constant(startStep),
  fc.constant(startStep),
  fc.constant(restartStep),
  fc.constant(finishOk),
  fc.constant(finishOk),
  fc.tuple(fc.boolean(), fc.constantFrom(0, 500, 20_000)).map(([q, ms]) => retry(q, ms)),
  fc.constant(failStep),
  fc
    .tuple(
      fc.uniqueArray(actionArb, { minLength: 1, maxLength: 3 }),
      fc.option(fc.constantFrom(1_000, 30_000), { nil: null })
    )
    .map(([actions, t]) => awaitInput(actions, t)),
  actionArb.map(signal),
  fc.constant(requestCancel),
  fc.constant(workerCancel),
  fc.constant(succeed),
  fc.constant(intruder),
  fc.constant(lapsedWorker)
]

describe("RunState against a model of SPEC §2", () => {
  it("predicts every command's outcome over 1000 model-based runs", () => {
    fc.assert(
      fc.property(fc.commands(modelCommands, { maxCommands: 60, size: "max" }), (cmds) => {
        const params = createParams({ limits: MODEL_LIMITS })
        const created = RunState.create(params, { now: T0, redaction: DEFAULT_REDACTION_POLICY })
        const setup = () => ({
          model: {
            now: T0,
            status: "queued",
            attempts: 1,
            steps: 0,
            open: new Map(),
            retried: null,
            cancelRequested: false,
            actions: null,
            expiresAt: null,
            availableAt: T0,
            leaseExpiresAt: null,
            lastSignal: null,
            nextStep: 1
          } satisfies Model as Model,
          real: { run: created.record, now: T0, log: [...created.events], claims: 0 } as Real
        })
        fc.modelRun(setup, cmds)
      }),
      { numRuns: NUM_RUNS }
    )
  })
})
