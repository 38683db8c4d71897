/**
 * RunsClient: what a client of Baton sees, the same over HTTP
 * (`@baton/transport-http`'s createHttpClient) and in-process
 * (`@baton/transport-in-process`). Failures reject with an ApiError carrying
 * the HTTP status and reason code of SPEC §4, whichever transport is used.
 */
import type { ApiKey, Scope } from "./ApiKey.js"
import { type ErrorDetail, httpStatusOf, type ReasonCode } from "./Errors.js"
import type { JsonValue } from "./Json.js"
import type { LimitsInput } from "./Limits.js"
import type { Run, RunStatus } from "./Run.js"
import type { RunEvent, SignalAction } from "./RunEvent.js"

export interface CreateRunBody {
  readonly input: JsonValue
  readonly metadata?: Readonly<Record<string, string | number | boolean>>
  readonly handler?: string
  readonly limits?: LimitsInput
}

/** A created or replayed run (`replayed` is true when the idempotency key had been used with the same body). */
export interface CreatedRun {
  readonly run: Run
  readonly replayed: boolean
}

export interface ListRunsParams {
  readonly status?: ReadonlyArray<RunStatus>
  readonly handler?: string
  readonly created_after?: string
  readonly created_before?: string
  readonly metadata?: Readonly<Record<string, string | number | boolean>>
  readonly limit?: number
  readonly cursor?: string
}

export interface RunList {
  readonly data: ReadonlyArray<Run>
  readonly has_more: boolean
  readonly next_cursor: string | null
}

export interface EventList {
  readonly data: ReadonlyArray<RunEvent>
  readonly has_more: boolean
  readonly next_after_seq: number
}

export interface SignalBody {
  readonly action: SignalAction
  readonly input?: JsonValue
  readonly comment?: string
}

export interface CreateKeyBody {
  readonly scopes: ReadonlyArray<Scope>
  readonly name?: string
  readonly customer_id?: string
  readonly expires_at?: string
}

export interface CreatedKey extends ApiKey {
  /** `key_id:secret`, shown once. */
  readonly key: string
}

export interface StreamOptions {
  /** Start after this seq (default 0: replay from seq 1). */
  readonly afterSeq?: number
  /** Ends the stream (and frees the server's subscription). */
  readonly signal?: AbortSignal
}

export interface RunsClient {
  /** Idempotent: the same key and body always answer with the same run. */
  createRun(body: CreateRunBody, options: { readonly idempotencyKey: string }): Promise<CreatedRun>
  getRun(runId: string): Promise<Run>
  listRuns(params?: ListRunsParams): Promise<RunList>
  readEvents(
    runId: string,
    params?: { readonly after_seq?: number; readonly limit?: number }
  ): Promise<EventList>
  /** Every event after `afterSeq`, then live ones; ends after the terminal event. Resumes by seq on its own. */
  streamEvents(runId: string, options?: StreamOptions): AsyncIterable<RunEvent>
  /** With an idempotency key the signal is safe to retry: a repeat is answered as the first was. */
  signalRun(runId: string, body: SignalBody, options?: { readonly idempotencyKey?: string }): Promise<Run>
  cancelRun(runId: string, body?: { readonly reason?: string }): Promise<Run>
  createApiKey(body: CreateKeyBody): Promise<CreatedKey>
  listApiKeys(): Promise<ReadonlyArray<ApiKey>>
  revokeApiKey(keyId: string): Promise<void>
}

/** A refused call: the SPEC §4 envelope, as data, on every transport. */
export class ApiError extends Error {
  override readonly name = "ApiError"
  constructor(
    readonly status: number,
    readonly reason_code: ReasonCode | (string & {}),
    message: string,
    readonly request_id: string | null = null,
    readonly details: ReadonlyArray<ErrorDetail> | undefined = undefined,
    /** Seconds, from `retry-after` (429, 503). */
    readonly retry_after: number | null = null
  ) {
    super(message)
  }
}

/** The shape of every engine rejection (BatonError and InternalError alike). */
interface TaggedRejection {
  readonly _tag: string
  readonly reason_code: string
  readonly message: string
  readonly details?: ReadonlyArray<ErrorDetail>
  readonly retry_after_ms?: number
}

const isTaggedRejection = (error: unknown): error is TaggedRejection =>
  typeof error === "object" &&
  error !== null &&
  typeof (error as TaggedRejection)._tag === "string" &&
  typeof (error as TaggedRejection).reason_code === "string" &&
  typeof (error as TaggedRejection).message === "string"

/**
 * Any engine rejection as the ApiError every transport shows: status from the
 * reason code, message, details (omitted when empty), and for 503 the whole
 * seconds of `retry-after`. Anything else (a defect, InternalError) is 500
 * INTERNAL with no text of its own; the original is kept as `cause`.
 */
export const toApiError = (error: unknown): ApiError => {
  if (error instanceof ApiError) return error
  if (isTaggedRejection(error) && error.reason_code !== "INTERNAL") {
    const status = httpStatusOf(error.reason_code as ReasonCode)
    const details = error.details !== undefined && error.details.length > 0 ? error.details : undefined
    const retryAfter =
      status === 503 && typeof error.retry_after_ms === "number"
        ? Math.max(1, Math.ceil(error.retry_after_ms / 1000))
        : null
    return new ApiError(status, error.reason_code, error.message, null, details, retryAfter)
  }
  const internal = new ApiError(500, "INTERNAL", "Internal error.")
  internal.cause = error
  return internal
}
