/**
 * Request ids and the error envelope of SPEC §4:
 * `{ error, reason_code, request_id, details? }`, with `x-request-id` on every
 * response. Nothing but a reason code and a prepared sentence ever reaches a
 * client: no stack, no SQL, no secret.
 */
import { Id, type Principal, type ReasonCode, toApiError } from "@baton/core"
import type { Context, MiddlewareHandler } from "hono"
import type { ContentfulStatusCode } from "hono/utils/http-status"

export type ApiEnv = { Variables: { requestId: string; principal: Principal } }

/** A client-sent request id is kept when it is sane: short, printable, no separators that break logs. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

export const requestId: MiddlewareHandler<ApiEnv> = async (c, next) => {
  const sent = c.req.header("x-request-id")
  const id = sent !== undefined && SANE_REQUEST_ID.test(sent) ? sent : Id.makeRequestId()
  c.set("requestId", id)
  c.header("x-request-id", id)
  await next()
}

/** An expected refusal raised inside a route; rendered as the envelope by `toErrorResponse`. */
export class HttpFailure extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly reason_code: ReasonCode,
    message: string
  ) {
    super(message)
  }
}

export const fail = (status: ContentfulStatusCode, reasonCode: ReasonCode, message: string): never => {
  throw new HttpFailure(status, reasonCode, message)
}

export const errorResponse = (
  c: Context<ApiEnv>,
  status: ContentfulStatusCode,
  reasonCode: ReasonCode | "INTERNAL",
  message: string,
  details?: ReadonlyArray<{ path: string; message: string }>
): Response => {
  const request_id = c.get("requestId") ?? Id.makeRequestId()
  c.header("x-request-id", request_id)
  return c.json(
    { error: message, reason_code: reasonCode, request_id, ...(details === undefined ? {} : { details }) },
    status
  )
}

/** Any error thrown by a route, as the envelope. Unknown errors are 500 INTERNAL, with nothing of their text. */
export const toErrorResponse = (c: Context<ApiEnv>, error: unknown): Response => {
  if (error instanceof HttpFailure) return errorResponse(c, error.status, error.reason_code, error.message)
  // The same mapping the in-process transport uses: one table for both.
  const api = toApiError(error)
  if (api.retry_after !== null) c.header("retry-after", String(api.retry_after))
  return errorResponse(
    c,
    api.status as ContentfulStatusCode,
    api.reason_code as ReasonCode,
    api.message,
    api.details
  )
}
