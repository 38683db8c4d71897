/**
 * The run state machine (SPEC §2): one pure function decides every transition.
 *
 * `transition(run, command, ctx)` returns the events to append and the patch
 * to apply to the stored run, or a `TransitionRejected` carrying a reason
 * code. The projection part of every patch is, by construction, what
 * `evolve` folds out of the new events, so the stored run always equals the
 * fold of its log (plus the lease group, which no event carries).
 */
import canonicalize from "canonicalize"
import { Data, Either } from "effect"
import { TransitionRejected } from "./Errors.js"
import type { JsonObject, JsonValue } from "./Json.js"
import { INITIAL_USAGE, type LimitName, type Limits, limitReasonCode } from "./Limits.js"
import { type RedactionPolicy, RedactionScope } from "./Redaction.js"
import { isTerminal, type Metadata, type RunPatch, type RunRecord, type SignalRecord } from "./Run.js"
import type {
  EventBody,
  EventRow,
  EventType,
  EventValue,
  FailureReasonCode,
  SignalAction,
  StepError,
  StepOutcome
} from "./RunEvent.js"

export interface TransitionContext {
  /** Epoch ms, from the Clock service. */
  readonly now: number
  readonly redaction: RedactionPolicy
}

/** One progress report inside a `Progress` command. */
export interface ProgressItem {
  readonly stepId: string | null
  readonly kind: string
  /** The kind's own fields; for `content_delta`, `{ content_delta: string }`. */
  readonly fields: JsonObject
}

export type RunCommand = Data.TaggedEnum<{
  /** A worker takes a queued run, or a running one whose lease expired. */
  Claim: { readonly workerId: string; readonly leaseToken: string; readonly leaseMs: number }
  /** A sweep looks at a run whose timer is due or whose lease expired. */
  Tick: {}
  StartStep: {
    readonly leaseToken: string
    readonly stepId: string
    readonly name: string
    readonly attempt: number
  }
  Progress: { readonly leaseToken: string; readonly items: ReadonlyArray<ProgressItem> }
  ReportUsage: {
    readonly leaseToken: string
    readonly stepId: string | null
    readonly tokens: number
    readonly costUsd: number
  }
  FinishStep: {
    readonly leaseToken: string
    readonly stepId: string
    readonly outcome: StepOutcome
    readonly output?: JsonValue
    readonly error?: StepError
    readonly retryInMs?: number
    /** With `retry_step`: let go of the run and have it claimed again after the backoff. */
    readonly requeue?: boolean
  }
  AwaitInput: {
    readonly leaseToken: string
    readonly prompt: string
    readonly actions: ReadonlyArray<SignalAction>
    readonly inputSchema?: JsonObject
    /** Overrides `limits.input_timeout_ms`; null waits without a timeout. */
    readonly timeoutMs?: number | null
  }
  Signal: {
    readonly action: SignalAction
    readonly input?: JsonValue
    readonly comment?: string
    /** A retried signal with this key is answered as the first one was, whatever happened since. */
    readonly idempotencyKey?: string
  }
  RequestCancel: { readonly reason?: string }
  /** The worker has stopped the handler after a cancel request. */
  Cancel: { readonly leaseToken: string }
  ExceedLimit: { readonly leaseToken: string; readonly limit: LimitName }
  Succeed: { readonly leaseToken: string; readonly output: JsonValue }
  Fail: { readonly leaseToken: string; readonly reasonCode: FailureReasonCode; readonly message: string }
}>
export const RunCommand = Data.taggedEnum<RunCommand>()

export type Decision =
  | {
      readonly _tag: "Transition"
      /** Events to append, seq already assigned (last_seq + 1 …). */
      readonly events: ReadonlyArray<EventRow>
      readonly patch: RunPatch
      /** The run after the append (version bumped by one). */
      readonly next: RunRecord
    }
  | { readonly _tag: "NoChange"; readonly run: RunRecord }

export interface CreateParams {
  readonly id: string
  readonly customerId: string
  readonly handler: string
  readonly input: JsonValue
  readonly metadata: Metadata
  readonly limits: Limits
}

// ---------------------------------------------------------------------------
// evolve: the fold of the log

const LEASE_GROUP = ["lease_token", "lease_expires_at", "available_at"] as const

/** The run before its first event: identity fields, everything else empty. */
export const initialRecord = (p: CreateParams, now: number): RunRecord => ({
  id: p.id,
  customer_id: p.customerId,
  handler: p.handler,
  status: "queued",
  version: 0,
  last_seq: 0,
  input: p.input,
  metadata: {},
  output: null,
  error: null,
  awaiting_input: null,
  limits: p.limits,
  usage: INITIAL_USAGE,
  created_at: now,
  updated_at: now,
  started_at: null,
  finished_at: null,
  worker_id: null,
  open_steps: {},
  cancel_requested: null,
  last_signal: null,
  deadline_at: null,
  timer_at: null,
  lease_token: null,
  lease_expires_at: null,
  available_at: null
})

const timerOf = (r: RunRecord): number | null => {
  if (isTerminal(r.status)) return null
  if (r.status === "awaiting_input") return r.awaiting_input?.expires_at ?? null
  return r.deadline_at
}

const withoutKey = <V>(o: Readonly<Record<string, V>>, key: string): Record<string, V> => {
  const { [key]: _, ...rest } = o
  return rest
}

const evolveBody = (r: RunRecord, e: EventRow): RunRecord => {
  const ts = e.timestamp
  const body = e as unknown as EventBody
  switch (body.type) {
    case "run.queued":
      return { ...r, status: "queued", metadata: body.payload.value.metadata as Metadata }
    case "run.started":
      return {
        ...r,
        status: "running",
        worker_id: body.payload.value.worker_id,
        started_at: r.started_at ?? ts,
        deadline_at: r.deadline_at ?? ts + r.limits.max_duration_ms,
        usage:
          r.usage.attempts === body.payload.value.attempt
            ? r.usage
            : { ...r.usage, attempts: body.payload.value.attempt }
      }
    case "step.started": {
      const v = body.payload.value
      return {
        ...r,
        open_steps: { ...r.open_steps, [v.step_id]: { name: v.name, attempt: v.attempt } },
        usage: v.attempt === 1 ? { ...r.usage, steps: r.usage.steps + 1 } : r.usage
      }
    }
    case "step.progress": {
      const v = body.payload.value
      if (v.kind !== "usage") return r
      const tokens = typeof v.tokens === "number" ? v.tokens : 0
      const cost = typeof v.cost_usd === "number" ? v.cost_usd : 0
      return {
        ...r,
        usage: { ...r.usage, tokens: r.usage.tokens + tokens, cost_usd: r.usage.cost_usd + cost }
      }
    }
    case "step.done":
      return { ...r, open_steps: withoutKey(r.open_steps, body.payload.value.step_id) }
    case "run.awaiting_input": {
      const v = body.payload.value
      return {
        ...r,
        status: "awaiting_input",
        worker_id: null,
        awaiting_input: {
          prompt: v.prompt,
          actions: v.actions,
          ...(v.input_schema === undefined ? {} : { input_schema: v.input_schema }),
          expires_at: v.expires_at === undefined ? null : Date.parse(v.expires_at),
          since: ts
        }
      }
    }
    case "run.signal_received": {
      const paused = r.awaiting_input === null ? 0 : ts - r.awaiting_input.since
      return {
        ...r,
        last_signal: body.payload.value as SignalRecord,
        awaiting_input: null,
        deadline_at: r.deadline_at === null ? null : r.deadline_at + paused
      }
    }
    case "run.cancel_requested":
      return {
        ...r,
        cancel_requested: body.payload.value.reason === undefined ? {} : { reason: body.payload.value.reason }
      }
    case "run.requeued":
      return {
        ...r,
        status: "queued",
        worker_id: null,
        open_steps: {},
        usage: { ...r.usage, attempts: body.payload.value.attempt }
      }
    case "run.worker.succeeded":
      return { ...terminal(r, ts), status: "succeeded", output: body.payload.value.output }
    case "run.worker.failed":
      return {
        ...terminal(r, ts),
        status: "failed",
        error: { reason_code: body.payload.value.reason_code, message: body.payload.value.message }
      }
    case "run.cancelled":
      return {
        ...terminal(r, ts),
        status: "cancelled",
        error: {
          reason_code: "RUN_CANCELLED",
          message: body.payload.value.reason ?? "The run was cancelled."
        }
      }
    case "run.limit_exceeded":
      return {
        ...terminal(r, ts),
        status: "limit_exceeded",
        error: {
          reason_code: body.payload.value.reason_code,
          message: `The run exceeded its ${body.payload.value.limit} limit.`
        }
      }
  }
}

const terminal = (r: RunRecord, ts: number): RunRecord => ({
  ...r,
  finished_at: ts,
  awaiting_input: null,
  worker_id: null,
  open_steps: {}
})

/** Applies one stored event to the projection. Total over any log RunState produced. */
export const evolve = (r: RunRecord, e: EventRow): RunRecord => {
  const next = evolveBody(r, e)
  const timer = timerOf(next)
  return { ...next, last_seq: e.seq, updated_at: e.timestamp, timer_at: timer }
}

/** Folds a whole log over the run's creation-time record. */
export const fold = (initial: RunRecord, events: ReadonlyArray<EventRow>): RunRecord =>
  events.reduce(evolve, initial)

// ---------------------------------------------------------------------------
// decide

type NewEvent = EventBody

const ev = <T extends EventType>(type: T, value: EventValue<T>, redacted = false): NewEvent =>
  ({ type, payload: { redacted, value } }) as NewEvent

type LeasePatch = Pick<RunPatch, (typeof LEASE_GROUP)[number]>

interface Plan {
  readonly events: ReadonlyArray<NewEvent>
  /** Lease-group fields to set; status changes away from `running` clear the lease on their own. */
  readonly lease?: LeasePatch
}

const reject = (reason_code: TransitionRejected["reason_code"], message: string) =>
  Either.left(new TransitionRejected({ reason_code, message }))

const plan = (events: ReadonlyArray<NewEvent>, lease?: LeasePatch): Either.Either<Plan, TransitionRejected> =>
  Either.right(lease === undefined ? { events } : { events, lease })

const limitEvent = (limit: LimitName): NewEvent =>
  ev("run.limit_exceeded", { limit, reason_code: limitReasonCode(limit) })

const requireLease = (
  run: RunRecord,
  leaseToken: string,
  now: number
): Either.Either<void, TransitionRejected> => {
  if (isTerminal(run.status)) return reject("RUN_ALREADY_TERMINAL", `The run is already ${run.status}.`)
  if (run.status !== "running") return reject("RUN_NOT_RUNNING", `The run is ${run.status}, not running.`)
  if (run.lease_token !== leaseToken) return reject("LEASE_LOST", "The lease is held by another claim.")
  if (run.lease_expires_at === null || run.lease_expires_at <= now)
    return reject("LEASE_LOST", "The lease has expired.")
  return Either.void
}

/** What ends a running run before the worker's next move: its deadline, then a cancel request. */
const interruption = (run: RunRecord, now: number): NewEvent | null => {
  if (run.deadline_at !== null && now >= run.deadline_at) return limitEvent("max_duration_ms")
  if (run.cancel_requested !== null) return ev("run.cancelled", run.cancel_requested)
  return null
}

/** Equal as JSON values, whatever the key order (a store such as Postgres jsonb reorders keys). */
const sameJson = (a: unknown, b: unknown): boolean => canonicalize(a) === canonicalize(b)

/** Own keys only: a step id such as "constructor" or "__proto__" is not an open step. */
const openStep = (run: RunRecord, stepId: string) =>
  Object.hasOwn(run.open_steps, stepId) ? run.open_steps[stepId] : undefined
const isOpen = (run: RunRecord, stepId: string): boolean => Object.hasOwn(run.open_steps, stepId)

/** The longest wait for input, as for `limits.input_timeout_ms`. */
const MAX_INPUT_TIMEOUT_MS = 365 * 24 * 3600 * 1000

const decide = (
  run: RunRecord,
  cmd: RunCommand,
  ctx: TransitionContext
): Either.Either<Plan | "no-change", TransitionRejected> => {
  const { now } = ctx
  const redact = () => new RedactionScope(ctx.redaction)
  const workerCommand = (
    leaseToken: string,
    body: () => Either.Either<Plan | "no-change", TransitionRejected>
  ): Either.Either<Plan | "no-change", TransitionRejected> =>
    Either.flatMap(requireLease(run, leaseToken, now), body)

  switch (cmd._tag) {
    case "Claim": {
      // A lease that is not a positive duration would never expire (NaN) or be lost at once.
      if (!(Number.isSafeInteger(cmd.leaseMs) && cmd.leaseMs > 0))
        return reject("VALIDATION_FAILED", "A lease is a positive integer of milliseconds.")
      const lease = { lease_token: cmd.leaseToken, lease_expires_at: now + cmd.leaseMs, available_at: null }
      if (run.status === "queued") {
        if (run.available_at !== null && run.available_at > now) return Either.right("no-change")
        if (run.deadline_at !== null && now >= run.deadline_at) return plan([limitEvent("max_duration_ms")])
        return plan([ev("run.started", { attempt: run.usage.attempts, worker_id: cmd.workerId })], lease)
      }
      if (run.status === "running" && run.lease_expires_at !== null && run.lease_expires_at <= now) {
        const interrupt = interruption(run, now)
        if (interrupt !== null) return plan([interrupt])
        const attempt = run.usage.attempts + 1
        return plan(
          [
            ev("run.requeued", { reason: "lease_expired", attempt }),
            ev("run.started", { attempt, worker_id: cmd.workerId })
          ],
          lease
        )
      }
      return Either.right("no-change")
    }

    case "Tick": {
      if (isTerminal(run.status)) return Either.right("no-change")
      if (run.status === "awaiting_input") {
        const expires = run.awaiting_input?.expires_at ?? null
        return expires !== null && now >= expires
          ? plan([limitEvent("input_timeout")])
          : Either.right("no-change")
      }
      if (run.deadline_at !== null && now >= run.deadline_at) return plan([limitEvent("max_duration_ms")])
      if (run.status === "running" && run.lease_expires_at !== null && run.lease_expires_at <= now) {
        if (run.cancel_requested !== null) return plan([ev("run.cancelled", run.cancel_requested)])
        return plan([ev("run.requeued", { reason: "lease_expired", attempt: run.usage.attempts + 1 })], {
          available_at: now
        })
      }
      return Either.right("no-change")
    }

    case "StartStep":
      return workerCommand(cmd.leaseToken, () => {
        if (!Number.isInteger(cmd.attempt) || cmd.attempt < 1)
          return reject("VALIDATION_FAILED", "A step attempt is a positive integer.")
        if (isOpen(run, cmd.stepId)) return reject("STEP_MISMATCH", `Step ${cmd.stepId} is already running.`)
        const interrupt = interruption(run, now)
        if (interrupt !== null) return plan([interrupt])
        if (cmd.attempt === 1 && run.usage.steps >= run.limits.max_steps)
          return plan([limitEvent("max_steps")])
        if (cmd.attempt > run.limits.max_step_attempts)
          return reject("STEP_MISMATCH", `Step ${cmd.stepId} has no attempt ${cmd.attempt} left.`)
        return plan([ev("step.started", { step_id: cmd.stepId, name: cmd.name, attempt: cmd.attempt })])
      })

    case "Progress":
      return workerCommand(cmd.leaseToken, () => {
        const interrupt = interruption(run, now)
        if (interrupt !== null) return plan([interrupt])
        const events: NewEvent[] = []
        for (const item of cmd.items) {
          if (item.stepId !== null && !isOpen(run, item.stepId))
            return reject("STEP_MISMATCH", `Step ${item.stepId} is not running.`)
          if (item.kind === "usage") return reject("VALIDATION_FAILED", "Usage is reported with ReportUsage.")
          const scope = redact()
          const { step_id: _s, kind: _k, ...fields } = item.fields
          const value = { ...scope.json(fields), step_id: item.stepId, kind: item.kind }
          events.push(ev("step.progress", value, scope.redacted))
        }
        return plan(events)
      })

    case "ReportUsage":
      return workerCommand(cmd.leaseToken, () => {
        if (
          !(
            Number.isSafeInteger(cmd.tokens) &&
            cmd.tokens >= 0 &&
            Number.isSafeInteger(run.usage.tokens + cmd.tokens) &&
            Number.isFinite(cmd.costUsd) &&
            cmd.costUsd >= 0
          )
        )
          return reject(
            "VALIDATION_FAILED",
            "Usage is a non-negative integer of tokens and a non-negative cost."
          )
        if (cmd.stepId !== null && !isOpen(run, cmd.stepId))
          return reject("STEP_MISMATCH", `Step ${cmd.stepId} is not running.`)
        const interrupt = interruption(run, now)
        if (interrupt !== null) return plan([interrupt])
        const events: NewEvent[] = [
          ev("step.progress", {
            step_id: cmd.stepId,
            kind: "usage",
            tokens: cmd.tokens,
            cost_usd: cmd.costUsd
          })
        ]
        const { max_tokens, max_cost_usd } = run.limits
        if (max_tokens !== null && run.usage.tokens + cmd.tokens > max_tokens)
          events.push(limitEvent("max_tokens"))
        else if (max_cost_usd !== null && run.usage.cost_usd + cmd.costUsd > max_cost_usd)
          events.push(limitEvent("max_cost_usd"))
        return plan(events)
      })

    case "FinishStep":
      return workerCommand(cmd.leaseToken, () => {
        const open = openStep(run, cmd.stepId)
        if (open === undefined) return reject("STEP_MISMATCH", `Step ${cmd.stepId} is not running.`)
        const scope = redact()
        const base = { step_id: cmd.stepId, name: open.name }
        // Only outcomes that carry the error redact it: an ignored error never sets `redacted`.
        const stepError = (): StepError =>
          cmd.error === undefined ? { message: "The step failed." } : redactError(cmd.error, scope)
        switch (cmd.outcome) {
          case "succeeded": {
            // A step that returned nothing records no output, and replays as nothing.
            const output = cmd.output === undefined ? {} : { output: scope.json(cmd.output) }
            const done = ev("step.done", { ...base, outcome: "succeeded", ...output }, scope.redacted)
            const interrupt = interruption(run, now)
            return plan(interrupt === null ? [done] : [done, interrupt])
          }
          case "fail_run": {
            const err = stepError()
            return plan([
              ev("step.done", { ...base, outcome: "fail_run", error: err }, scope.redacted),
              ev("run.worker.failed", { reason_code: "STEP_FAILED", message: err.message }, scope.redacted)
            ])
          }
          case "retry_step": {
            const err = stepError()
            if (open.attempt >= run.limits.max_step_attempts) {
              return plan([
                ev("step.done", { ...base, outcome: "fail_run", error: err }, scope.redacted),
                ev(
                  "run.worker.failed",
                  {
                    reason_code: "STEP_RETRIES_EXHAUSTED",
                    message: `Step ${open.name} failed ${open.attempt} times: ${err.message}`
                  },
                  scope.redacted
                )
              ])
            }
            const retryInMs = cmd.retryInMs ?? 0
            if (!Number.isInteger(retryInMs) || retryInMs < 0)
              return reject("VALIDATION_FAILED", "retryInMs is a non-negative integer.")
            const done = ev(
              "step.done",
              { ...base, outcome: "retry_step", error: err, retry_in_ms: retryInMs },
              scope.redacted
            )
            const interrupt = interruption(run, now)
            if (interrupt !== null) return plan([done, interrupt])
            if (cmd.requeue === true)
              return plan([done, ev("run.requeued", { reason: "retry", attempt: run.usage.attempts + 1 })], {
                available_at: now + retryInMs
              })
            return plan([done])
          }
        }
      })

    case "AwaitInput":
      return workerCommand(cmd.leaseToken, () => {
        if (cmd.actions.length === 0 || new Set(cmd.actions).size !== cmd.actions.length)
          return reject("VALIDATION_FAILED", "A wait offers one or more distinct actions.")
        const timeoutMs = cmd.timeoutMs === undefined ? run.limits.input_timeout_ms : cmd.timeoutMs
        if (
          timeoutMs !== null &&
          !(Number.isInteger(timeoutMs) && timeoutMs > 0 && timeoutMs <= MAX_INPUT_TIMEOUT_MS)
        )
          return reject("VALIDATION_FAILED", "An input timeout is a positive integer of milliseconds.")
        const interrupt = interruption(run, now)
        if (interrupt !== null) return plan([interrupt])
        const scope = redact()
        const value = {
          prompt: scope.string(cmd.prompt),
          actions: cmd.actions,
          ...(cmd.inputSchema === undefined ? {} : { input_schema: cmd.inputSchema }),
          ...(timeoutMs === null ? {} : { expires_at: new Date(now + timeoutMs).toISOString() })
        }
        return plan([ev("run.awaiting_input", value, scope.redacted)])
      })

    case "Signal": {
      const scope = redact()
      const signal: SignalRecord = {
        action: cmd.action,
        ...(cmd.input === undefined ? {} : { input: scope.json(cmd.input) }),
        ...(cmd.comment === undefined ? {} : { comment: scope.string(cmd.comment) })
      }
      const { idempotency_key: lastKey, ...lastSignal } = run.last_signal ?? { action: "approve" }
      if (cmd.idempotencyKey !== undefined && run.last_signal !== null && lastKey === cmd.idempotencyKey)
        return sameJson(lastSignal, signal)
          ? Either.right("no-change")
          : reject("IDEMPOTENCY_KEY_REUSED", "This idempotency key was used with another signal.")
      if (run.status !== "awaiting_input") {
        // A retried signal that already answered the latest wait changes nothing.
        if (run.last_signal !== null && sameJson(lastSignal, signal)) return Either.right("no-change")
        if (isTerminal(run.status)) return reject("RUN_ALREADY_TERMINAL", `The run is already ${run.status}.`)
        return reject("RUN_NOT_AWAITING_INPUT", `The run is ${run.status}, not awaiting input.`)
      }
      const waiting = run.awaiting_input!
      // A wait that timed out is over even if no sweep has noticed yet: the timeout wins.
      if (waiting.expires_at !== null && now >= waiting.expires_at) return plan([limitEvent("input_timeout")])
      if (!waiting.actions.includes(cmd.action))
        return reject("SIGNAL_INPUT_INVALID", `This wait accepts ${waiting.actions.join(", ")}.`)
      const received =
        cmd.idempotencyKey === undefined ? signal : { ...signal, idempotency_key: cmd.idempotencyKey }
      return plan(
        [
          ev("run.signal_received", received, scope.redacted),
          ev("run.requeued", { reason: "signal", attempt: run.usage.attempts + 1 })
        ],
        { available_at: now }
      )
    }

    case "RequestCancel": {
      const scope = redact()
      const reason = cmd.reason === undefined ? {} : { reason: scope.string(cmd.reason) }
      if (run.status === "cancelled") return Either.right("no-change")
      if (isTerminal(run.status)) return reject("RUN_ALREADY_TERMINAL", `The run is already ${run.status}.`)
      if (run.status === "running") {
        if (run.cancel_requested !== null) return Either.right("no-change")
        return plan([ev("run.cancel_requested", reason, scope.redacted)])
      }
      return plan([ev("run.cancelled", reason, scope.redacted)])
    }

    case "Cancel":
      return workerCommand(cmd.leaseToken, () =>
        run.cancel_requested === null
          ? reject("RUN_NOT_RUNNING", "No cancel was requested.")
          : plan([ev("run.cancelled", run.cancel_requested)])
      )

    case "ExceedLimit":
      return workerCommand(cmd.leaseToken, () => plan([limitEvent(cmd.limit)]))

    case "Succeed":
      return workerCommand(cmd.leaseToken, () => {
        const scope = redact()
        const output = scope.json(cmd.output)
        return plan([ev("run.worker.succeeded", { output }, scope.redacted)])
      })

    case "Fail":
      return workerCommand(cmd.leaseToken, () => {
        const scope = redact()
        const message = scope.string(cmd.message)
        return plan([ev("run.worker.failed", { reason_code: cmd.reasonCode, message }, scope.redacted)])
      })
  }
}

const redactError = (error: StepError, scope: RedactionScope): StepError => ({
  message: scope.string(error.message),
  ...(error.name === undefined ? {} : { name: error.name })
})

// ---------------------------------------------------------------------------
// transition: decide, then fold the decision into a patch

const stamp = (run: RunRecord, events: ReadonlyArray<NewEvent>, now: number): ReadonlyArray<EventRow> =>
  events.map((e, i) => ({
    run_id: run.id,
    seq: run.last_seq + i + 1,
    type: e.type,
    timestamp: now,
    payload: e.payload as EventRow["payload"]
  }))

const PATCHABLE = [
  "status",
  "last_seq",
  "metadata",
  "output",
  "error",
  "awaiting_input",
  "usage",
  "updated_at",
  "started_at",
  "finished_at",
  "worker_id",
  "open_steps",
  "cancel_requested",
  "last_signal",
  "deadline_at",
  "timer_at",
  ...LEASE_GROUP
] as const satisfies ReadonlyArray<keyof RunPatch>

const applyPlan = (run: RunRecord, p: Plan, now: number): Decision => {
  const events = stamp(run, p.events, now)
  let next = fold(run, events)
  if (next.status !== "running") next = { ...next, lease_token: null, lease_expires_at: null }
  if (next.status !== "queued") next = { ...next, available_at: null }
  else if (run.status !== "queued") next = { ...next, available_at: now }
  if (p.lease !== undefined) next = { ...next, ...p.lease }
  next = { ...next, version: run.version + 1 }
  return { _tag: "Transition", events, patch: patchBetween(run, next), next }
}

/** The fields a write must set to turn the stored `before` into `after`. */
export const patchBetween = (before: RunRecord, after: RunRecord): RunPatch => {
  const patch: Record<string, unknown> = {}
  for (const key of PATCHABLE) if (after[key] !== before[key]) patch[key] = after[key]
  return patch as RunPatch
}

const COMMAND_TAGS: ReadonlySet<string> = new Set<RunCommand["_tag"]>([
  "Claim",
  "Tick",
  "StartStep",
  "Progress",
  "ReportUsage",
  "FinishStep",
  "AwaitInput",
  "Signal",
  "RequestCancel",
  "Cancel",
  "ExceedLimit",
  "Succeed",
  "Fail"
])

/**
 * Decides what `command` does to `run` at `ctx.now`. Pure: the same inputs
 * always give the same events and patch.
 */
export const transition = (
  run: RunRecord,
  command: RunCommand,
  ctx: TransitionContext
): Either.Either<Decision, TransitionRejected> =>
  // Callers outside TypeScript may pass anything: an unknown command is refused, not a crash.
  typeof command !== "object" || command === null || !COMMAND_TAGS.has(command._tag)
    ? reject("VALIDATION_FAILED", "Unknown command.")
    : Either.map(decide(run, command, ctx), (p) =>
        p === "no-change" || p.events.length === 0 ? { _tag: "NoChange", run } : applyPlan(run, p, ctx.now)
      )

/**
 * A new run: its record after `run.queued` (seq 1) and the events to store
 * with it. Input and metadata are redacted here, before anything is stored.
 */
export const create = (
  params: CreateParams,
  ctx: TransitionContext
): { readonly record: RunRecord; readonly events: ReadonlyArray<EventRow> } => {
  const input = new RedactionScope(ctx.redaction).json(params.input)
  const scope = new RedactionScope(ctx.redaction)
  const metadata = scope.json(params.metadata) as Metadata
  const initial = initialRecord({ ...params, input }, ctx.now)
  const { events, next } = applyPlan(
    initial,
    { events: [ev("run.queued", { handler: params.handler, metadata }, scope.redacted)] },
    ctx.now
  ) as Extract<Decision, { _tag: "Transition" }>
  return { record: { ...next, available_at: ctx.now }, events }
}

/** The lease-group fields: the part of a stored run that no event carries. */
export const LEASE_FIELDS: ReadonlyArray<keyof RunRecord> = LEASE_GROUP
