/**
 * Multi-document transactions: `withTransaction` retries a callback that met
 * a transient error (a write conflict with a concurrent transaction, a
 * failover) and commits when it returns. A callback that must write nothing
 * throws `Rollback` with the answer to give instead.
 */
import type { ClientSession, MongoClient } from "mongodb"

export class Rollback<A> extends Error {
  constructor(readonly answer: A) {
    super("rollback")
  }
}

export const inTransaction = async <A>(
  client: MongoClient,
  work: (session: ClientSession) => Promise<A>
): Promise<A> => {
  const session = client.startSession()
  try {
    // Stated here too, for a client the caller opened with other defaults.
    return await session.withTransaction(() => work(session), {
      readPreference: "primary",
      readConcern: { level: "snapshot" },
      writeConcern: { w: "majority" }
    })
  } catch (cause) {
    if (cause instanceof Rollback) return cause.answer as A
    throw cause
  } finally {
    await session.endSession()
  }
}
