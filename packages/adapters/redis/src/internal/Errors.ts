/**
 * Maps whatever ioredis throws to a StorageError whose message is safe to
 * show: it names the kind of trouble, never a command, a key or a secret.
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"

const messageOf = (error: unknown): string =>
  error instanceof Error ? `${error.name} ${error.message}` : String(error)

/**
 * The original error rides along as a non-enumerable `cause`: there for a
 * debugger or a log that asks for it, never serialized into a response.
 */
const withCause = (error: StorageError, cause: unknown): StorageError => {
  Object.defineProperty(error, "cause", { value: cause, enumerable: false, configurable: true })
  return error
}

export const toStorageError = (error: unknown): StorageError => withCause(classify(error), error)

const classify = (error: unknown): StorageError => {
  const text = messageOf(error)
  if (/READONLY/.test(text))
    return storageUnavailable("Redis is read-only right now (a failover may be running).")
  if (/CLUSTERDOWN|TRYAGAIN|MOVED|ASK\b/.test(text))
    return storageUnavailable("The Redis Cluster is not serving this key right now.")
  if (/LOADING/.test(text)) return storageUnavailable("Redis is loading its data set.")
  if (/BUSY/.test(text)) return storageUnavailable("Redis is busy running a script.")
  if (/OOM/.test(text)) return storageUnavailable("Redis is out of memory.")
  if (/timed? ?out|ETIMEDOUT/i.test(text)) return storageUnavailable("Redis did not answer in time.")
  if (
    /Connection is closed|ECONNRESET|ECONNREFUSED|EPIPE|ENOTFOUND|EHOSTUNREACH|Stream isn't writeable|max retries|reconnect/i.test(
      text
    )
  )
    return storageUnavailable("The connection to Redis was lost.")
  return storageUnavailable("Redis answered with an error.")
}

/** Runs one promise-returning Redis call as an Effect failing with a safe StorageError. */
export const attempt = <A>(call: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({ try: call, catch: toStorageError })
