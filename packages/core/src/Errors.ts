import { Schema } from "effect"

/**
 * Every reason code Baton emits. The HTTP ones are SPEC §4; the run-level ones
 * appear inside `run.worker.failed` / `run.limit_exceeded`; the worker ones are
 * returned to workers (and embedders) when a transition is refused.
 */
export const ReasonCode = Schema.Literal(
  // HTTP / API (SPEC §4)
  "VALIDATION_FAILED",
  "IDEMPOTENCY_KEY_MISSING",
  "IDEMPOTENCY_KEY_INVALID",
  "MALFORMED_JSON",
  "AUTH_MISSING_HEADER",
  "AUTH_KEY_INVALID",
  "AUTH_SCOPE_DENIED",
  "RUN_NOT_FOUND",
  "ROUTE_NOT_FOUND",
  "IDEMPOTENCY_KEY_REUSED",
  "RUN_NOT_AWAITING_INPUT",
  "RUN_ALREADY_TERMINAL",
  "BODY_TOO_LARGE",
  "UNSUPPORTED_MEDIA_TYPE",
  "HANDLER_NOT_FOUND",
  "SIGNAL_INPUT_INVALID",
  "RATE_LIMITED",
  "STORAGE_UNAVAILABLE",
  "INTERNAL",
  // inside run.worker.failed
  "STEP_FAILED",
  "STEP_RETRIES_EXHAUSTED",
  "HANDLER_ERROR",
  // inside run.limit_exceeded
  "LIMIT_MAX_STEPS",
  "LIMIT_MAX_DURATION",
  "LIMIT_INPUT_TIMEOUT",
  "LIMIT_BUDGET",
  // inside run.cancelled's projection error
  "RUN_CANCELLED",
  // refused worker transitions
  "RUN_NOT_RUNNING",
  "LEASE_LOST",
  "STEP_MISMATCH",
  "KEY_NOT_FOUND"
)
export type ReasonCode = typeof ReasonCode.Type

/** One problem with one field of the input; `path` is a JSON-pointer-like dotted path. */
export const ErrorDetail = Schema.Struct({ path: Schema.String, message: Schema.String })
export type ErrorDetail = typeof ErrorDetail.Type

/** The input of a public function is malformed (HTTP 400). */
export class ValidationError extends Schema.TaggedError<ValidationError>()("ValidationError", {
  reason_code: Schema.Literal("VALIDATION_FAILED", "IDEMPOTENCY_KEY_MISSING", "IDEMPOTENCY_KEY_INVALID"),
  message: Schema.String,
  details: Schema.Array(ErrorDetail)
}) {}

/** The run does not exist, or belongs to another customer (HTTP 404; the two are indistinguishable). */
export class RunNotFound extends Schema.TaggedError<RunNotFound>()("RunNotFound", {
  reason_code: Schema.Literal("RUN_NOT_FOUND"),
  message: Schema.String
}) {}

/** The request is well-formed but conflicts with the current state (HTTP 409). */
export class RunConflict extends Schema.TaggedError<RunConflict>()("RunConflict", {
  reason_code: Schema.Literal("IDEMPOTENCY_KEY_REUSED", "RUN_NOT_AWAITING_INPUT", "RUN_ALREADY_TERMINAL"),
  message: Schema.String
}) {}

/** The request names something that cannot be processed (HTTP 422). */
export class Unprocessable extends Schema.TaggedError<Unprocessable>()("Unprocessable", {
  reason_code: Schema.Literal("HANDLER_NOT_FOUND", "SIGNAL_INPUT_INVALID"),
  message: Schema.String,
  details: Schema.Array(ErrorDetail)
}) {}

/** Authentication or authorization failed (HTTP 401 / 403). */
export class AuthError extends Schema.TaggedError<AuthError>()("AuthError", {
  reason_code: Schema.Literal(
    "AUTH_MISSING_HEADER",
    "AUTH_KEY_INVALID",
    "AUTH_SCOPE_DENIED",
    "KEY_NOT_FOUND"
  ),
  message: Schema.String
}) {}

/**
 * The store could not be reached or answered with an error (HTTP 503).
 * `message` is safe to show: adapters never put SQL, commands or secrets in it.
 */
export class StorageError extends Schema.TaggedError<StorageError>()("StorageError", {
  reason_code: Schema.Literal("STORAGE_UNAVAILABLE"),
  message: Schema.String,
  retry_after_ms: Schema.Number
}) {}

/**
 * A state-machine transition was refused: the run is not in a state that
 * accepts the command, or the caller's lease is no longer the run's lease.
 */
export class TransitionRejected extends Schema.TaggedError<TransitionRejected>()("TransitionRejected", {
  reason_code: Schema.Literal(
    "RUN_ALREADY_TERMINAL",
    "RUN_NOT_AWAITING_INPUT",
    "RUN_NOT_RUNNING",
    "LEASE_LOST",
    "STEP_MISMATCH",
    "SIGNAL_INPUT_INVALID",
    "VALIDATION_FAILED",
    "IDEMPOTENCY_KEY_REUSED"
  ),
  message: Schema.String
}) {}

export const storageUnavailable = (message: string, retryAfterMs = 1000): StorageError =>
  new StorageError({ reason_code: "STORAGE_UNAVAILABLE", message, retry_after_ms: retryAfterMs })

export const validationError = (
  details: ReadonlyArray<ErrorDetail>,
  reasonCode: ValidationError["reason_code"] = "VALIDATION_FAILED"
): ValidationError =>
  new ValidationError({
    reason_code: reasonCode,
    message: details.length === 1 ? `${details[0]!.path}: ${details[0]!.message}` : "The request is invalid.",
    details
  })

export const runNotFound = (): RunNotFound =>
  new RunNotFound({ reason_code: "RUN_NOT_FOUND", message: "No run with this id." })

/** Every error a public engine function can fail with. */
export type BatonError =
  | ValidationError
  | RunNotFound
  | RunConflict
  | Unprocessable
  | AuthError
  | StorageError
  | TransitionRejected

/** The HTTP status a reason code maps to (SPEC §4); transports use this, never their own table. */
export const httpStatusOf = (code: ReasonCode): number => {
  switch (code) {
    case "VALIDATION_FAILED":
    case "IDEMPOTENCY_KEY_MISSING":
    case "IDEMPOTENCY_KEY_INVALID":
    case "MALFORMED_JSON":
      return 400
    case "AUTH_MISSING_HEADER":
    case "AUTH_KEY_INVALID":
      return 401
    case "AUTH_SCOPE_DENIED":
      return 403
    case "RUN_NOT_FOUND":
    case "ROUTE_NOT_FOUND":
    case "KEY_NOT_FOUND":
      return 404
    case "IDEMPOTENCY_KEY_REUSED":
    case "RUN_NOT_AWAITING_INPUT":
    case "RUN_ALREADY_TERMINAL":
    case "RUN_NOT_RUNNING":
    case "LEASE_LOST":
    case "STEP_MISMATCH":
      return 409
    case "BODY_TOO_LARGE":
      return 413
    case "UNSUPPORTED_MEDIA_TYPE":
      return 415
    case "HANDLER_NOT_FOUND":
    case "SIGNAL_INPUT_INVALID":
      return 422
    case "RATE_LIMITED":
      return 429
    case "STORAGE_UNAVAILABLE":
      return 503
    default:
      return 500
  }
}
