/** RunStore over SQL: each port method is one statement, or one transaction (a claim that must decide). */
import {
  Appended,
  type ClaimRequest,
  Conflict,
  CreateResult,
  decideClaim,
  type EventRow,
  Id,
  isAppendBatch,
  type RunRecord,
  type RunStoreEncoded,
  storageUnavailable
} from "@baton/core"
import { Effect } from "effect"
import type { SqlExecutor } from "./Executor.js"
import {
  decodeEvent,
  decodeRun,
  encodeDecided,
  encodeEvents,
  encodeRun,
  encodeValue,
  patchColumns
} from "./RunRows.js"
import type { Statements } from "./Statements.js"
import { sql } from "./StorageErrors.js"

export interface NotifySettings {
  /** NOTIFY on every append (false in poll-only mode, where nobody LISTENs). */
  readonly notify: boolean
  readonly channel: string
}

/** Rounds of a claim whose runs ended (deadline passed, cancel requested) instead of starting. */
const CLAIM_ROUNDS = 3

/** A create racing an expiring key can find neither its own row nor the other's: try again, a few times. */
const CREATE_ATTEMPTS = 3

export const makeRunStore = (db: SqlExecutor, st: Statements, feed: NotifySettings): RunStoreEncoded => ({
  create: (req) =>
    Effect.flatMap(
      sql(async () => {
        const base = [...encodeRun(req.run), ...encodeEvents(req.events), feed.notify, feed.channel]
        const key = req.idempotency
        if (key === null) {
          await db.query(st.createRun, base)
          return CreateResult.Created({ run: req.run })
        }
        for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
          const created = await db.query(st.createRunWithKey, [
            ...base,
            key.customer_id,
            key.key,
            key.fingerprint,
            key.expires_at,
            req.now
          ])
          if (created.length > 0) return CreateResult.Created({ run: req.run })
          const [found] = await db.query(st.keyedRun, [key.customer_id, key.key])
          if (found !== undefined) {
            if (found.key_fingerprint !== key.fingerprint)
              return CreateResult.KeyReused({ runId: String(found.key_run_id) })
            if (found.id !== null) return CreateResult.Replayed({ run: decodeRun(found) })
          }
        }
        return null
      }),
      (result) =>
        result === null
          ? Effect.fail(storageUnavailable("The idempotency key changed hands repeatedly; try again."))
          : Effect.succeed(result)
    ),

  append: (runId, expect, events, patch) =>
    sql(async () => {
      const first = events[0]
      // Seqs must continue the log exactly; anything else is a caller bug, refused like a race.
      if (!isAppendBatch(runId, events)) return Conflict
      const columns = patchColumns(patch)
      const rows = await db.query(st.append(columns), [
        runId,
        expect.version,
        expect.leaseToken,
        first === undefined ? null : first.seq - 1,
        ...encodeEvents(events),
        feed.notify && first !== undefined,
        feed.channel,
        ...columns.map((c) => encodeValue(c, (patch as Partial<RunRecord>)[c]))
      ])
      return rows.length > 0 ? Appended : Conflict
    }),

  get: (runId) =>
    sql(async () => {
      const [row] = await db.query(st.getRun, [runId])
      return row === undefined ? null : decodeRun(row)
    }),

  list: (filter, cursor, limit) =>
    sql(async () => {
      const rows = await db.query(st.listRuns, [
        filter.customerId,
        filter.status ?? null,
        filter.handler ?? null,
        filter.createdAfter ?? null,
        filter.createdBefore ?? null,
        filter.metadata === undefined ? null : JSON.stringify(filter.metadata),
        cursor?.createdAt ?? null,
        cursor?.id ?? null,
        limit + 1
      ])
      return { runs: rows.slice(0, limit).map(decodeRun), hasMore: rows.length > limit }
    }),

  readEvents: (runId, afterSeq, limit) =>
    sql(async () => (await db.query(st.readEvents, [runId, afterSeq, limit])).map(decodeEvent)),

  claim: (req) =>
    sql(async () => {
      // The common case in one statement: queued runs start as RunState's Claim would start them.
      const rows = await db.query(st.claimQueued, [
        req.now,
        req.handlers,
        req.max,
        req.workerId,
        Array.from({ length: req.max }, () => Id.makeLeaseToken()),
        req.leaseMs,
        feed.notify,
        feed.channel
      ])
      const started = rows.filter((row) => row.id !== null).map(decodeRun)
      // Runs it left alone (an expired lease, a passed deadline) go through the general claim.
      const others = Number(rows[0]?.others ?? 0)
      if (others === 0 || started.length >= req.max) return started
      return [...started, ...(await claimDecided(db, st, feed, { ...req, max: req.max - started.length }))]
    }),

  renewLease: (runId, leaseToken, leaseMs, now) =>
    sql(async () => {
      const [row] = await db.query(st.renewLease, [runId, leaseToken, now + leaseMs])
      return row === undefined ? null : decodeRun(row)
    }),

  dueTimers: (now, limit) => sql(async () => (await db.query(st.dueTimers, [now, limit])).map(decodeRun)),

  ping: () => Effect.asVoid(sql(() => db.query(st.ping, [])))
})

/** The general claim: lock candidates, decide each with RunState, write the decisions; one transaction. */
const claimDecided = (db: SqlExecutor, st: Statements, feed: NotifySettings, req: ClaimRequest) =>
  db.transaction(async (tx) => {
    const claimed: RunRecord[] = []
    for (let round = 0; round < CLAIM_ROUNDS && claimed.length < req.max; round++) {
      const wanted = req.max - claimed.length
      const rows = await tx.query(st.lockClaimable, [req.now, req.handlers, wanted])
      const decided: Array<{ run: RunRecord; events: ReadonlyArray<EventRow> }> = []
      for (const row of rows) {
        const decision = decideClaim(decodeRun(row), req)
        if (decision === null) continue
        const { next, events } = decision
        decided.push({ run: next, events })
        if (next.status === "running") claimed.push(next)
      }
      if (decided.length > 0) {
        const written = await tx.query(st.writeDecided, [
          ...encodeDecided(decided),
          feed.notify,
          feed.channel
        ])
        // The rows are locked by this transaction: anything else is a bug, and rolls the claim back.
        if (written.length !== decided.length) throw new Error("a claim wrote fewer runs than it decided")
      }
      // Another round only when this one was full and some of it ended instead of starting.
      if (rows.length < wanted || decided.every((d) => d.run.status === "running")) break
    }
    return claimed
  })
