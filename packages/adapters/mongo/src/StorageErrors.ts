/**
 * Driver failures as the engine sees them: `StorageError` (503 with
 * retry-after at the API; workers back off and carry on). Messages name the
 * server's numeric error code or the kind of network failure, and never the
 * command, its values, the URL or a password (the driver puts hosts, and
 * sometimes values, in its own messages: they are dropped here).
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"
import { MongoError, MongoNetworkError, MongoServerSelectionError } from "mongodb"

/** Server codes that mean "away, overloaded or mid-failover: try again". */
const TRANSIENT_CODES: ReadonlySet<number> = new Set([
  6, // HostUnreachable
  7, // HostNotFound
  89, // NetworkTimeout
  91, // ShutdownInProgress
  112, // WriteConflict
  189, // PrimarySteppedDown
  262, // ExceededTimeLimit
  9001, // SocketException
  10107, // NotWritablePrimary
  11600, // InterruptedAtShutdown
  11602, // InterruptedDueToReplStateChange
  13435, // NotPrimaryNoSecondaryOk
  13436 // NotPrimaryOrSecondary
])

const isTransient = (error: MongoError): boolean =>
  error.hasErrorLabel("TransientTransactionError") ||
  error.hasErrorLabel("RetryableWriteError") ||
  (typeof error.code === "number" && TRANSIENT_CODES.has(error.code))

export const toStorageError = (cause: unknown): StorageError => {
  if (cause instanceof MongoServerSelectionError)
    return storageUnavailable("The MongoDB store could not be reached (no server answered in time).")
  if (cause instanceof MongoNetworkError)
    return storageUnavailable("The connection to the MongoDB store failed or was lost.")
  if (cause instanceof MongoError) {
    const code = typeof cause.code === "number" ? ` (code ${cause.code})` : ""
    return isTransient(cause)
      ? storageUnavailable(`The MongoDB store is unavailable${code}.`)
      : storageUnavailable(`The MongoDB store refused an operation${code}.`)
  }
  return storageUnavailable("The MongoDB store failed unexpectedly.")
}

/** Runs a driver call as an Effect whose failure is a safe StorageError. */
export const mongo = <A>(run: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({ try: run, catch: toStorageError })

/** E11000: a unique index refused the write. */
export const isDuplicateKey = (cause: unknown): boolean => cause instanceof MongoError && cause.code === 11000
