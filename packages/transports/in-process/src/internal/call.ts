import { toApiError } from "@baton/core"

/** Awaits an engine call, turning its rejection into an ApiError. */
export const call = async <A>(work: Promise<A>): Promise<A> => {
  try {
    return await work
  } catch (error) {
    throw toApiError(error)
  }
}
