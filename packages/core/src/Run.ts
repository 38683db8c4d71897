import { Schema } from "effect"
import { ReasonCode } from "./Errors.js"
import { optional } from "./internal/schema.js"
import { JsonObject, JsonValue } from "./Json.js"
import { Limits, Usage } from "./Limits.js"
import { SignalAction } from "./RunEvent.js"

export const RunStatus = Schema.Literal(
  "queued",
  "running",
  "awaiting_input",
  "succeeded",
  "failed",
  "cancelled",
  "limit_exceeded"
)
export type RunStatus = typeof RunStatus.Type

export const TERMINAL_STATUSES: ReadonlySet<RunStatus> = new Set<RunStatus>([
  "succeeded",
  "failed",
  "cancelled",
  "limit_exceeded"
])
export const isTerminal = (status: RunStatus): boolean => TERMINAL_STATUSES.has(status)

/** `run_` + a ULID: 26 Crockford base32 characters whose prefix is the creation time. */
export const RUN_ID_PATTERN = /^run_[0-9A-HJKMNP-TV-Z]{26}$/
export const RunId = Schema.String.pipe(Schema.pattern(RUN_ID_PATTERN, { identifier: "RunId" }))

/**
 * Text every store can index as it is: no U+0000 and no unpaired surrogate
 * (Postgres text and jsonb refuse both). Metadata is an index, so it is held
 * to this; payloads (input, output, events) may carry any JSON string.
 */
const IndexableText = Schema.String.pipe(
  Schema.filter(
    (s) => (!s.includes("\u0000") && s.isWellFormed()) || "contains U+0000 or an unpaired surrogate"
  )
)

/** Metadata: ≤ 50 keys of ≤ 64 characters, values string (≤ 512) | number | boolean. */
export const METADATA_MAX_KEYS = 50
export const Metadata = Schema.Record({
  key: IndexableText.pipe(
    Schema.minLength(1),
    Schema.maxLength(64),
    // Assigned to a plain object it would set the prototype instead: dropped silently, or worse.
    Schema.filter((k) => k !== "__proto__" || "is a reserved name")
  ),
  value: Schema.Union(
    IndexableText.pipe(Schema.maxLength(512)),
    Schema.Number.pipe(Schema.finite()),
    Schema.Boolean
  )
}).pipe(
  Schema.filter((m) => Object.keys(m).length <= METADATA_MAX_KEYS || `at most ${METADATA_MAX_KEYS} keys`, {
    identifier: "Metadata"
  })
)
export type Metadata = typeof Metadata.Type

export const RunErrorInfo = Schema.Struct({ reason_code: ReasonCode, message: Schema.String })
export type RunErrorInfo = typeof RunErrorInfo.Type

/** What the run is waiting for, as stored: `expires_at`/`since` in epoch ms. */
export const AwaitingInputRecord = Schema.Struct({
  prompt: Schema.String,
  actions: Schema.Array(SignalAction),
  input_schema: optional(JsonObject),
  expires_at: Schema.NullOr(Schema.Number),
  since: Schema.Number
})
export type AwaitingInputRecord = typeof AwaitingInputRecord.Type

export const SignalRecord = Schema.Struct({
  action: SignalAction,
  input: optional(JsonValue),
  comment: optional(Schema.String),
  idempotency_key: optional(Schema.String)
})
export type SignalRecord = typeof SignalRecord.Type

export const OpenStep = Schema.Struct({ name: Schema.String, attempt: Schema.Int })

/**
 * The run as stored: the adapters' row. Timestamps are epoch ms.
 *
 * Fields fall in three groups:
 * - identity, fixed at creation: `id`, `customer_id`, `handler`, `input`, `limits`, `created_at`;
 * - the projection of the event log (RunState's fold): everything else but the lease group;
 * - the lease group, set by commands and never derived: `lease_token`, `lease_expires_at`,
 *   `available_at`.
 *
 * Adapters index `customer_id`, `status`, `handler`, `created_at`+`id`, `available_at`,
 * `lease_expires_at`, `timer_at` and `metadata`; the rest is opaque JSON to them.
 */
export const RunRecord = Schema.Struct({
  id: Schema.String,
  customer_id: Schema.String,
  handler: Schema.String,
  status: RunStatus,
  /** Bumped by exactly one on every append; the compare-and-append checks it. */
  version: Schema.Int,
  last_seq: Schema.Int,
  input: JsonValue,
  metadata: Metadata,
  output: Schema.NullOr(JsonValue),
  error: Schema.NullOr(RunErrorInfo),
  awaiting_input: Schema.NullOr(AwaitingInputRecord),
  limits: Limits,
  usage: Usage,
  created_at: Schema.Number,
  updated_at: Schema.Number,
  started_at: Schema.NullOr(Schema.Number),
  finished_at: Schema.NullOr(Schema.Number),
  /** The worker that holds (or last held) the run while running. */
  worker_id: Schema.NullOr(Schema.String),
  /** Steps started and not yet done, by step id. */
  open_steps: Schema.Record({ key: Schema.String, value: OpenStep }),
  cancel_requested: Schema.NullOr(Schema.Struct({ reason: optional(Schema.String) })),
  /** The signal that answered the latest wait: a repeated identical signal is a no-op. */
  last_signal: Schema.NullOr(SignalRecord),
  /** When max_duration_ms runs out; paused while awaiting input. Null until first started. */
  deadline_at: Schema.NullOr(Schema.Number),
  /** The next time a sweep must look at this run (input timeout or deadline); null when none. */
  timer_at: Schema.NullOr(Schema.Number),
  // lease group
  lease_token: Schema.NullOr(Schema.String),
  lease_expires_at: Schema.NullOr(Schema.Number),
  /** A queued run is claimable from this time on (retry backoff); its claim order otherwise. */
  available_at: Schema.NullOr(Schema.Number)
})
export type RunRecord = typeof RunRecord.Type

/** The fields an append may change; keys absent from a patch are left as stored. */
export type RunPatch = Partial<
  Omit<RunRecord, "id" | "customer_id" | "handler" | "input" | "limits" | "created_at" | "version">
>

/** The public run (SPEC §1). */
export const Run = Schema.Struct({
  id: Schema.String,
  status: RunStatus,
  handler: Schema.String,
  input: JsonValue,
  metadata: Metadata,
  output: Schema.NullOr(JsonValue),
  error: Schema.NullOr(RunErrorInfo),
  awaiting_input: Schema.NullOr(
    Schema.Struct({
      prompt: Schema.String,
      actions: Schema.Array(SignalAction),
      input_schema: optional(JsonObject),
      expires_at: optional(Schema.String)
    })
  ),
  limits: Limits,
  usage: Usage,
  last_seq: Schema.Int,
  cancel_requested: Schema.Boolean,
  created_at: Schema.String,
  started_at: Schema.NullOr(Schema.String),
  finished_at: Schema.NullOr(Schema.String),
  updated_at: Schema.String
})
export type Run = typeof Run.Type

const iso = (ms: number): string => new Date(ms).toISOString()
const isoOrNull = (ms: number | null): string | null => (ms === null ? null : iso(ms))

export const toPublicRun = (r: RunRecord): Run => ({
  id: r.id,
  status: r.status,
  handler: r.handler,
  input: r.input,
  metadata: r.metadata,
  output: r.output,
  error: r.error,
  awaiting_input:
    r.awaiting_input === null
      ? null
      : {
          prompt: r.awaiting_input.prompt,
          actions: r.awaiting_input.actions,
          ...(r.awaiting_input.input_schema === undefined
            ? {}
            : { input_schema: r.awaiting_input.input_schema }),
          ...(r.awaiting_input.expires_at === null ? {} : { expires_at: iso(r.awaiting_input.expires_at) })
        },
  limits: r.limits,
  usage: r.usage,
  last_seq: r.last_seq,
  cancel_requested: r.cancel_requested !== null,
  created_at: iso(r.created_at),
  started_at: isoOrNull(r.started_at),
  finished_at: isoOrNull(r.finished_at),
  updated_at: iso(r.updated_at)
})
