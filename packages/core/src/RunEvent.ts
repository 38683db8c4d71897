import { Schema } from "effect"
import { optional } from "./internal/schema.js"
import { JsonObject, JsonValue } from "./Json.js"
import { LimitName, LimitReasonCode } from "./Limits.js"

export const SignalAction = Schema.Literal("approve", "reject", "submit_input")
export type SignalAction = typeof SignalAction.Type

export const FailureReasonCode = Schema.Literal(
  "STEP_FAILED",
  "STEP_RETRIES_EXHAUSTED",
  "HANDLER_ERROR",
  "HANDLER_NOT_FOUND"
)
export type FailureReasonCode = typeof FailureReasonCode.Type

export const StepOutcome = Schema.Literal("succeeded", "retry_step", "fail_run")
export type StepOutcome = typeof StepOutcome.Type

/** The error a step reported: what a handler threw, reduced to data. */
export const StepError = Schema.Struct({
  message: Schema.String,
  name: optional(Schema.String)
})
export type StepError = typeof StepError.Type

export const RequeueReason = Schema.Literal("lease_expired", "signal", "retry")
export type RequeueReason = typeof RequeueReason.Type

/** `payload.value` of each event type (SPEC §3). */
export const EventValues = {
  "run.queued": Schema.Struct({ handler: Schema.String, metadata: JsonObject }),
  "run.started": Schema.Struct({ attempt: Schema.Int, worker_id: Schema.String }),
  "step.started": Schema.Struct({ step_id: Schema.String, name: Schema.String, attempt: Schema.Int }),
  // `kind: "content_delta"` carries `content_delta`; `kind: "usage"` carries `tokens`/`cost_usd`;
  // any other kind carries the handler's own fields. `step_id` is null for run-level reports.
  "step.progress": Schema.Struct(
    { step_id: Schema.NullOr(Schema.String), kind: Schema.String },
    Schema.Record({ key: Schema.String, value: JsonValue })
  ),
  "step.done": Schema.Struct({
    step_id: Schema.String,
    name: Schema.String,
    outcome: StepOutcome,
    output: optional(JsonValue),
    error: optional(StepError),
    retry_in_ms: optional(Schema.Int)
  }),
  "run.awaiting_input": Schema.Struct({
    prompt: Schema.String,
    actions: Schema.Array(SignalAction),
    input_schema: optional(JsonObject),
    expires_at: optional(Schema.String)
  }),
  "run.signal_received": Schema.Struct({
    action: SignalAction,
    input: optional(JsonValue),
    comment: optional(Schema.String),
    /** The client's idempotency key for this signal, when it sent one. */
    idempotency_key: optional(Schema.String)
  }),
  "run.cancel_requested": Schema.Struct({ reason: optional(Schema.String) }),
  "run.requeued": Schema.Struct({ reason: RequeueReason, attempt: Schema.Int }),
  "run.worker.succeeded": Schema.Struct({ output: JsonValue }),
  "run.worker.failed": Schema.Struct({ reason_code: FailureReasonCode, message: Schema.String }),
  "run.cancelled": Schema.Struct({ reason: optional(Schema.String) }),
  "run.limit_exceeded": Schema.Struct({ limit: LimitName, reason_code: LimitReasonCode })
} as const

export type EventType = keyof typeof EventValues
export const EVENT_TYPES = Object.keys(EventValues) as ReadonlyArray<EventType>
export type EventValue<T extends EventType> = (typeof EventValues)[T]["Type"]

export const TERMINAL_EVENT_TYPES: ReadonlySet<EventType> = new Set<EventType>([
  "run.worker.succeeded",
  "run.worker.failed",
  "run.cancelled",
  "run.limit_exceeded"
])

export const isTerminalEventType = (type: string): boolean => TERMINAL_EVENT_TYPES.has(type as EventType)

const payloadOf = <T extends EventType>(type: T) =>
  Schema.Struct({
    type: Schema.Literal(type),
    payload: Schema.Struct({ redacted: Schema.Boolean, value: EventValues[type] })
  })

/** An event's type and payload, typed per type: what the state machine produces. */
export const EventBody = Schema.Union(...EVENT_TYPES.map(payloadOf))
export type EventBody = {
  [T in EventType]: { type: T; payload: { redacted: boolean; value: EventValue<T> } }
}[EventType]

/**
 * An event as stored (the adapters' row): `timestamp` in epoch ms.
 * `payload` is opaque JSON to adapters.
 */
export const EventRow = Schema.Struct({
  run_id: Schema.String,
  seq: Schema.Int.pipe(Schema.positive()),
  type: Schema.String,
  timestamp: Schema.Number,
  payload: Schema.Struct({ redacted: Schema.Boolean, value: JsonValue })
})
export type EventRow = typeof EventRow.Type

/** The public envelope (SPEC §1): no run id, no storage id, ISO timestamp. */
export const RunEvent = Schema.Struct({
  seq: Schema.Int,
  type: Schema.String,
  timestamp: Schema.String,
  payload: Schema.Struct({ redacted: Schema.Boolean, value: JsonValue })
})
export type RunEvent = typeof RunEvent.Type

export const toRunEvent = (row: EventRow): RunEvent => ({
  seq: row.seq,
  type: row.type,
  timestamp: new Date(row.timestamp).toISOString(),
  payload: row.payload
})
