/**
 * Database failures as the engine sees them: `StorageError` (503 with
 * retry-after at the API; workers back off and carry on). Messages name the
 * SQLSTATE or network code and never the statement, its values or the URL.
 */
import { type StorageError, storageUnavailable } from "@baton/core"
import { Effect } from "effect"

const SQLSTATE = /^[0-9A-Z]{5}$/

// Classes that mean "the database is away or overloaded, try again": connection exceptions,
// insufficient resources, operator intervention (shutdown, terminate), serialization and deadlock.
const TRANSIENT_CLASSES = new Set(["08", "53", "57", "40"])

export const toStorageError = (cause: unknown): StorageError => {
  if (typeof cause === "object" && cause !== null) {
    const code = (cause as { code?: unknown }).code
    if (typeof code === "string" && SQLSTATE.test(code))
      return TRANSIENT_CLASSES.has(code.slice(0, 2))
        ? storageUnavailable(`The Postgres store is unavailable (SQLSTATE ${code}).`)
        : storageUnavailable(`The Postgres store refused an operation (SQLSTATE ${code}).`)
    if (typeof code === "string" && /^E[A-Z]+$/.test(code))
      return storageUnavailable(`The Postgres store could not be reached (${code}).`)
  }
  // pg reports a broken or timed-out connection as a plain Error without a code.
  if (cause instanceof Error && /connect|terminated|timeout|queryable/i.test(cause.message))
    return storageUnavailable("The connection to the Postgres store failed or was lost.")
  return storageUnavailable("The Postgres store failed unexpectedly.")
}

/** Runs a query as an Effect whose failure is a safe StorageError. */
export const sql = <A>(run: () => Promise<A>): Effect.Effect<A, StorageError> =>
  Effect.tryPromise({ try: run, catch: toStorageError })
