/**
 * RunStore over MongoDB. Every write that touches more than one document is
 * one transaction (a replica set is required); a stale version or a lost
 * lease matches no document, so the transaction is rolled back and nothing
 * is written.
 */
import {
  Appended,
  Conflict,
  CreateResult,
  decideClaim,
  type EventRow,
  isAppendBatch,
  type RunRecord,
  type RunStoreEncoded,
  storageUnavailable
} from "@baton/core"
import { Effect } from "effect"
import type { ClientSession, Filter, MongoClient, UpdateFilter } from "mongodb"
import type { Collections } from "./Collections.js"
import {
  CLAIM_INPUTS,
  claimAtOf,
  decodeEvent,
  decodeRun,
  encodeEvent,
  encodeIdempotency,
  encodePatch,
  encodeReplacement,
  encodeRun,
  metadataTerm,
  type RunDocument
} from "./Documents.js"
import { isDuplicateKey, mongo } from "./StorageErrors.js"
import { inTransaction, Rollback } from "./Transactions.js"
import type { WriteGate } from "./WriteGate.js"

/** Creates racing on one key can each see the other's insert fail: try again, a few times. */
const CREATE_ATTEMPTS = 3

const TERMINAL: ReadonlyArray<RunRecord["status"]> = ["succeeded", "failed", "cancelled", "limit_exceeded"]

export const makeRunStore = (client: MongoClient, c: Collections, gate: WriteGate): RunStoreEncoded => {
  const transaction = <A>(work: (session: ClientSession) => Promise<A>): Promise<A> =>
    gate.run(() => inTransaction(client, work))

  const insertEvents = async (events: ReadonlyArray<EventRow>, session: ClientSession) => {
    if (events.length > 0) await c.events.insertMany(events.map(encodeEvent), { session, ordered: true })
  }

  /** One create attempt, in one transaction. */
  const createOnce = (req: Parameters<RunStoreEncoded["create"]>[0]) =>
    transaction(async (session): Promise<CreateResult | null> => {
      const key = req.idempotency
      if (key !== null) {
        const existing = await c.idempotency.findOne(
          { customer_id: key.customer_id, key: key.key },
          { session }
        )
        if (existing !== null && existing.expires_at_ms > req.now) {
          if (existing.fingerprint !== key.fingerprint)
            return CreateResult.KeyReused({ runId: existing.run_id })
          const run = await c.runs.findOne({ _id: existing.run_id }, { session })
          if (run !== null) return CreateResult.Replayed({ run: decodeRun(run) })
          // A record whose run is gone answers nothing: the key is taken over below.
        }
        if (existing === null) await c.idempotency.insertOne(encodeIdempotency(key), { session })
        else {
          // Replaces exactly the record read above: if another create replaced it first, start over.
          const replaced = await c.idempotency.replaceOne(
            { _id: existing._id, run_id: existing.run_id, expires_at_ms: existing.expires_at_ms },
            encodeIdempotency(key),
            { session }
          )
          if (replaced.matchedCount === 0) throw new Rollback(null)
        }
      }
      await c.runs.insertOne(encodeRun(req.run), { session })
      await insertEvents(req.events, session)
      return CreateResult.Created({ run: req.run })
    })

  /** The version-checked write of one decided run and its events; false when another writer won. */
  const writeDecided = (run: RunRecord, next: RunRecord, events: ReadonlyArray<EventRow>) =>
    transaction(async (session) => {
      // The lease fields as read too: a renewal keeps `version` but moves `lease_expires_at`, and a
      // run renewed since the read is its holder's again, not this claim's.
      const taken = await c.runs.findOneAndUpdate(
        {
          _id: run.id,
          version: run.version,
          lease_token: run.lease_token,
          lease_expires_at: run.lease_expires_at
        },
        { $set: encodeReplacement(next) },
        { session, returnDocument: "after" }
      )
      if (taken === null) throw new Rollback(false)
      await insertEvents(events, session)
      return true
    })

  return {
    create: (req) =>
      Effect.flatMap(
        mongo(async () => {
          for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
            try {
              const result = await createOnce(req)
              if (result !== null) return result
            } catch (cause) {
              // Another create inserted the key (or its run) between our read and our insert.
              if (!isDuplicateKey(cause)) throw cause
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
      mongo(async () => {
        const first = events[0]
        // Seqs must continue the log exactly; anything else is a caller bug, refused like a race.
        if (!isAppendBatch(runId, events)) return Conflict
        const filter: Filter<RunDocument> = {
          _id: runId,
          version: expect.version,
          ...(expect.leaseToken === null ? {} : { lease_token: expect.leaseToken }),
          ...(first === undefined ? {} : { last_seq: first.seq - 1 })
        }
        const set = encodePatch(patch)
        const update: UpdateFilter<RunDocument> = {
          ...(Object.keys(set).length === 0 ? {} : { $set: set }),
          $inc: { version: 1 }
        }
        const movesClaim = CLAIM_INPUTS.some((f) => Object.hasOwn(patch, f))
        return transaction(async (session) => {
          const after = await c.runs.findOneAndUpdate(filter, update, { session, returnDocument: "after" })
          if (after === null) throw new Rollback(Conflict)
          if (movesClaim) {
            const claimAt = claimAtOf(after)
            if (claimAt !== (after.claim_at ?? null))
              await c.runs.updateOne({ _id: runId }, { $set: { claim_at: claimAt } }, { session })
          }
          await insertEvents(events, session)
          return Appended
        })
      }),

    get: (runId) =>
      mongo(async () => {
        const doc = await c.runs.findOne({ _id: runId })
        return doc === null ? null : decodeRun(doc)
      }),

    list: (filter, cursor, limit) =>
      mongo(async () => {
        if (limit <= 0) return { runs: [], hasMore: false }
        const and: Array<Filter<RunDocument>> = [{ customer_id: filter.customerId }]
        if (filter.status !== undefined) and.push({ status: { $in: [...filter.status] } })
        if (filter.handler !== undefined) and.push({ handler: filter.handler })
        if (filter.createdAfter !== undefined) and.push({ created_at: { $gte: filter.createdAfter } })
        if (filter.createdBefore !== undefined) and.push({ created_at: { $lt: filter.createdBefore } })
        const terms = Object.entries(filter.metadata ?? {}).map(([k, v]) => metadataTerm(k, v))
        if (terms.length > 0) and.push({ metadata_terms: { $all: terms } })
        if (cursor !== null)
          and.push({
            $or: [
              { created_at: { $lt: cursor.createdAt } },
              { created_at: cursor.createdAt, _id: { $lt: cursor.id } }
            ]
          })
        const docs = await c.runs
          .find({ $and: and })
          .sort({ created_at: -1, _id: -1 })
          .limit(limit + 1)
          .toArray()
        return { runs: docs.slice(0, limit).map(decodeRun), hasMore: docs.length > limit }
      }),

    readEvents: (runId, afterSeq, limit) =>
      mongo(async () => {
        // A limit of 0 means "no limit" to MongoDB.
        if (limit <= 0) return []
        const docs = await c.events
          .find({ run_id: runId, seq: { $gt: afterSeq } })
          .sort({ seq: 1 })
          .limit(limit)
          .toArray()
        return docs.map(decodeEvent)
      }),

    claim: (req) =>
      mongo(async () => {
        const claimed: RunRecord[] = []
        if (req.handlers.length === 0 || req.max <= 0) return claimed
        // Runs already decided by this call (taken, ended, or lost to another worker) are not looked at again.
        const seen: string[] = []
        for (;;) {
          const candidates = await c.runs
            .find({ handler: { $in: [...req.handlers] }, claim_at: { $lte: req.now }, _id: { $nin: seen } })
            .sort({ claim_at: 1, _id: 1 })
            .limit(req.max - claimed.length)
            .toArray()
          if (candidates.length === 0) return claimed
          for (const doc of candidates) {
            seen.push(doc._id)
            const run = decodeRun(doc)
            const decision = decideClaim(run, req)
            if (decision === null) continue
            const { next, events } = decision
            // A run that changed since the read (another worker, a renewal) is skipped. A write that fails
            // after others succeeded must not hide the runs already taken: they are returned.
            let written: boolean
            try {
              written = await writeDecided(run, next, events)
            } catch (cause) {
              if (claimed.length === 0) throw cause
              return claimed
            }
            if (!written) continue
            if (next.status === "running") claimed.push(next)
            if (claimed.length >= req.max) return claimed
          }
        }
      }),

    renewLease: (runId, leaseToken, leaseMs, now) =>
      mongo(async () => {
        const expires = now + leaseMs
        const doc = await gate.run(() =>
          c.runs.findOneAndUpdate(
            { _id: runId, status: "running", lease_token: leaseToken },
            // A running run is claimable once its lease expires: claim_at follows the lease.
            { $set: { lease_expires_at: expires, claim_at: expires } },
            { returnDocument: "after" }
          )
        )
        return doc === null ? null : decodeRun(doc)
      }),

    dueTimers: (now, limit) =>
      mongo(async () => {
        if (limit <= 0) return []
        const docs = await c.runs
          .find({
            $or: [
              { timer_at: { $lte: now }, status: { $nin: TERMINAL } },
              { status: "running", lease_expires_at: { $lte: now } }
            ]
          })
          .limit(limit)
          .toArray()
        return docs.map(decodeRun)
      }),

    ping: () => Effect.asVoid(mongo(() => c.runs.db.command({ ping: 1 })))
  }
}
