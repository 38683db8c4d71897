import { ApiError, type ErrorDetail, httpStatusOf, type ReasonCode } from "@baton/core"

/** The shape every engine rejection has (BatonError and InternalError alike). */
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
 * An engine rejection as the ApiError the HTTP transport would produce for it:
 * same status, reason code, message and details (omitted when empty), and for
 * STORAGE_UNAVAILABLE the whole seconds the server would send in `retry-after`.
 * InternalError or anything untagged (a defect) is 500 INTERNAL with no text of
 * its own, as the server renders it; the original is kept as `cause` for the
 * embedder's logs.
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

/** Awaits an engine call, turning its rejection into an ApiError. */
export const call = async <A>(work: Promise<A>): Promise<A> => {
  try {
    return await work
  } catch (error) {
    throw toApiError(error)
  }
}
