import { Schema } from "effect"

const PositiveInt = (max: number) => Schema.Int.pipe(Schema.between(1, max))

/** The limits in force for one run (SPEC §1). `null` means "no limit". */
export const Limits = Schema.Struct({
  max_steps: PositiveInt(100_000),
  max_duration_ms: PositiveInt(365 * 24 * 3600 * 1000),
  max_step_attempts: PositiveInt(100),
  /** Default timeout of a wait for input that names none itself. */
  input_timeout_ms: Schema.NullOr(PositiveInt(365 * 24 * 3600 * 1000)),
  max_tokens: Schema.NullOr(Schema.Int.pipe(Schema.nonNegative())),
  max_cost_usd: Schema.NullOr(Schema.Number.pipe(Schema.nonNegative(), Schema.finite()))
})
export type Limits = typeof Limits.Type

/** What a client may send: any subset, each field strictly typed. */
export const LimitsInput = Schema.partialWith(Limits, { exact: true })
export type LimitsInput = typeof LimitsInput.Type

export const DEFAULT_LIMITS: Limits = {
  max_steps: 100,
  max_duration_ms: 3_600_000,
  max_step_attempts: 3,
  input_timeout_ms: null,
  max_tokens: null,
  max_cost_usd: null
}

/** Fills a client's partial limits from the configured defaults. */
export const resolveLimits = (input: LimitsInput | undefined, defaults: Limits = DEFAULT_LIMITS): Limits => ({
  ...defaults,
  ...(input ?? {})
})

/** Which limit a `run.limit_exceeded` event names. */
export const LimitName = Schema.Literal(
  "max_steps",
  "max_duration_ms",
  "input_timeout",
  "max_tokens",
  "max_cost_usd"
)
export type LimitName = typeof LimitName.Type

export const LimitReasonCode = Schema.Literal(
  "LIMIT_MAX_STEPS",
  "LIMIT_MAX_DURATION",
  "LIMIT_INPUT_TIMEOUT",
  "LIMIT_BUDGET"
)
export type LimitReasonCode = typeof LimitReasonCode.Type

export const limitReasonCode = (limit: LimitName): LimitReasonCode => {
  switch (limit) {
    case "max_steps":
      return "LIMIT_MAX_STEPS"
    case "max_duration_ms":
      return "LIMIT_MAX_DURATION"
    case "input_timeout":
      return "LIMIT_INPUT_TIMEOUT"
    case "max_tokens":
    case "max_cost_usd":
      return "LIMIT_BUDGET"
  }
}

/** Usage counters of a run (SPEC §1), fed by step starts, requeues and the handler's usage reports. */
export const Usage = Schema.Struct({
  steps: Schema.Int.pipe(Schema.nonNegative()),
  attempts: Schema.Int.pipe(Schema.positive()),
  tokens: Schema.Int.pipe(Schema.nonNegative()),
  cost_usd: Schema.Number.pipe(Schema.nonNegative())
})
export type Usage = typeof Usage.Type

export const INITIAL_USAGE: Usage = { steps: 0, attempts: 1, tokens: 0, cost_usd: 0 }
