/**
 * RunStore: where runs and their event logs live. Every method is ONE atomic
 * operation in the store (one SQL statement or transaction, one Lua script,
 * one Mongo transaction). Adapters implement `RunStore.Encoded` over plain
 * rows; `RunStore.makeEncoded` lifts it into the service core programs use,
 * checking every row that comes back against the schema.
 */
import { Context, Data, Effect, Schema } from "effect"
import { StorageError, storageUnavailable } from "../Errors.js"
import { makeLeaseToken } from "../Id.js"
import type { IdempotencyRecord } from "../Idempotency.js"
import { DEFAULT_REDACTION_POLICY } from "../Redaction.js"
import { type RunPatch, RunRecord, type RunStatus } from "../Run.js"
import { EventRow } from "../RunEvent.js"
import * as RunState from "../RunState.js"

export interface CreateRequest {
  /** The new run, `version` 1 and `last_seq` = events.length. */
  readonly run: RunRecord
  /** Its first events, seq 1..n. */
  readonly events: ReadonlyArray<EventRow>
  /** Null when the caller sent no idempotency key. */
  readonly idempotency: IdempotencyRecord | null
  /** An existing record whose `expires_at` ≤ now no longer counts: the key creates a new run. */
  readonly now: number
}

export type CreateResult = Data.TaggedEnum<{
  /** The run was stored with its events and idempotency record. */
  Created: { readonly run: RunRecord }
  /** A live record with the same fingerprint exists: nothing was written; this is its run now. */
  Replayed: { readonly run: RunRecord }
  /** A live record with another fingerprint exists: nothing was written. */
  KeyReused: { readonly runId: string }
}>
export const CreateResult = Data.taggedEnum<CreateResult>()

export interface AppendExpectation {
  /** The run's version as the caller read it. */
  readonly version: number
  /** When not null, the stored lease token must equal it (fences a worker that lost its lease). */
  readonly leaseToken: string | null
}

/**
 * Whether `events` can be one append to `runId`: all of that run, seqs
 * consecutive (from `after` + 1 when given). Anything else is a caller bug,
 * which adapters refuse like a race (Conflict) before touching the store.
 */
export const isAppendBatch = (runId: string, events: ReadonlyArray<EventRow>, after?: number): boolean => {
  const start = after === undefined ? (events[0]?.seq ?? 1) : after + 1
  return events.every((e, i) => e.run_id === runId && e.seq === start + i)
}

export type AppendResult = { readonly _tag: "Appended" } | { readonly _tag: "Conflict" }
export const Appended: AppendResult = { _tag: "Appended" }
export const Conflict: AppendResult = { _tag: "Conflict" }

export interface ListFilter {
  readonly customerId: string
  readonly status?: ReadonlyArray<RunStatus>
  readonly handler?: string
  /** Epoch ms, inclusive. */
  readonly createdAfter?: number
  /** Epoch ms, exclusive. */
  readonly createdBefore?: number
  /** Every pair must match exactly (same type, same value). */
  readonly metadata?: Readonly<Record<string, string | number | boolean>>
}

/** Newest first: `(created_at, id)` descending; a cursor is the last row of the previous page. */
export interface ListCursor {
  readonly createdAt: number
  readonly id: string
}

export interface ListPage {
  readonly runs: ReadonlyArray<RunRecord>
  readonly hasMore: boolean
}

export interface ClaimRequest {
  readonly workerId: string
  /** Only runs whose handler is one of these. */
  readonly handlers: ReadonlyArray<string>
  readonly leaseMs: number
  /** At most this many runs. */
  readonly max: number
  readonly now: number
}

/**
 * A claim's decision about one candidate run, as every adapter must make it:
 * `RunState.transition(run, Claim{ workerId, <fresh lease token>, leaseMs }, now)`.
 * Null when the run is left as it is (not claimable after all); otherwise the
 * transition to store: `next` runs under the new lease, or has ended (deadline
 * passed, cancel requested).
 */
export const decideClaim = (
  run: RunRecord,
  req: ClaimRequest
): Extract<RunState.Decision, { readonly _tag: "Transition" }> | null => {
  const decision = RunState.transition(
    run,
    RunState.RunCommand.Claim({ workerId: req.workerId, leaseToken: makeLeaseToken(), leaseMs: req.leaseMs }),
    // Claim events carry no user data: the policy is never consulted.
    { now: req.now, redaction: DEFAULT_REDACTION_POLICY }
  )
  return decision._tag === "Left" || decision.right._tag === "NoChange" ? null : decision.right
}

/** Whether `run` passes a list filter: what `list` must select, for stores that filter in code. */
export const matchesListFilter = (run: RunRecord, f: ListFilter): boolean => {
  if (run.customer_id !== f.customerId) return false
  if (f.status !== undefined && !f.status.includes(run.status)) return false
  if (f.handler !== undefined && run.handler !== f.handler) return false
  if (f.createdAfter !== undefined && run.created_at < f.createdAfter) return false
  if (f.createdBefore !== undefined && run.created_at >= f.createdBefore) return false
  if (f.metadata !== undefined)
    for (const [k, v] of Object.entries(f.metadata)) if (run.metadata[k] !== v) return false
  return true
}

/**
 * The driver an adapter writes. Timestamps are epoch ms given by the caller
 * (core's Clock); adapters never read their own clock for run state.
 */
export interface RunStoreEncoded {
  /** Run row + events + idempotency record, all or nothing; concurrent duplicates create one run. */
  readonly create: (req: CreateRequest) => Effect.Effect<CreateResult, StorageError>
  /**
   * Compare-and-append: when the stored version equals `expect.version` (and the
   * lease token matches when given), inserts `events` (seqs last_seq+1…, contiguous),
   * applies `patch` (keys present are set, null included) and sets version + 1.
   * Otherwise writes nothing and answers Conflict.
   */
  readonly append: (
    runId: string,
    expect: AppendExpectation,
    events: ReadonlyArray<EventRow>,
    patch: RunPatch
  ) => Effect.Effect<AppendResult, StorageError>
  readonly get: (runId: string) => Effect.Effect<RunRecord | null, StorageError>
  readonly list: (
    filter: ListFilter,
    cursor: ListCursor | null,
    limit: number
  ) => Effect.Effect<ListPage, StorageError>
  /** Events with seq > afterSeq, ascending, at most `limit`. */
  readonly readEvents: (
    runId: string,
    afterSeq: number,
    limit: number
  ) => Effect.Effect<ReadonlyArray<EventRow>, StorageError>
  /**
   * Takes up to `max` claimable runs — queued with `available_at` ≤ now, oldest
   * `available_at` first, or running with `lease_expires_at` ≤ now — and applies to
   * each, atomically with its selection, the decision of
   * `RunState.transition(run, Claim{ workerId, leaseToken: <fresh>, leaseMs }, now)`.
   * Returns the runs that are running under the new lease (a claim may instead
   * end a run whose deadline passed or whose cancel was requested).
   */
  readonly claim: (req: ClaimRequest) => Effect.Effect<ReadonlyArray<RunRecord>, StorageError>
  /**
   * Extends the lease to now + leaseMs when the run is running under `leaseToken`
   * (also when the lease expired but no claim has taken the run since: the token
   * still fences); returns the run, or null when the lease is lost. Does not
   * change `version`.
   */
  readonly renewLease: (
    runId: string,
    leaseToken: string,
    leaseMs: number,
    now: number
  ) => Effect.Effect<RunRecord | null, StorageError>
  /** Non-terminal runs with `timer_at` ≤ now, or running with `lease_expires_at` ≤ now; at most `limit`. */
  readonly dueTimers: (now: number, limit: number) => Effect.Effect<ReadonlyArray<RunRecord>, StorageError>
  /** Cheap round trip proving the store answers (readiness). */
  readonly ping: () => Effect.Effect<void, StorageError>
}

const decodeRun = Schema.decodeUnknown(RunRecord)
const decodeEvents = Schema.decodeUnknown(Schema.Array(EventRow))

const corrupt = (what: string) => () => storageUnavailable(`The store returned a malformed ${what}.`)

const checkRun = (row: RunRecord | null) =>
  row === null ? Effect.succeed(null) : Effect.mapError(decodeRun(row), corrupt("run"))
const checkRuns = (rows: ReadonlyArray<RunRecord>) =>
  Effect.forEach(rows, (r) => Effect.mapError(decodeRun(r), corrupt("run")))

export class RunStore extends Context.Tag("@baton/core/RunStore")<RunStore, RunStoreEncoded>() {
  /** Lifts an adapter's driver into the service, validating what it returns. */
  static makeEncoded(driver: RunStoreEncoded): RunStoreEncoded {
    return {
      create: (req) =>
        Effect.flatMap(
          driver.create(req),
          (res): Effect.Effect<CreateResult, StorageError> =>
            res._tag === "KeyReused"
              ? Effect.succeed(res)
              : Effect.map(
                  Effect.mapError(decodeRun(res.run), corrupt("run")),
                  (run): CreateResult => ({ _tag: res._tag, run })
                )
        ),
      append: driver.append,
      get: (id) => Effect.flatMap(driver.get(id), checkRun),
      list: (filter, cursor, limit) =>
        Effect.flatMap(driver.list(filter, cursor, limit), (page) =>
          Effect.map(checkRuns(page.runs), (runs) => ({ runs, hasMore: page.hasMore }))
        ),
      readEvents: (id, after, limit) =>
        Effect.flatMap(driver.readEvents(id, after, limit), (rows) =>
          Effect.mapError(decodeEvents(rows), corrupt("event"))
        ),
      claim: (req) => Effect.flatMap(driver.claim(req), checkRuns),
      renewLease: (id, token, ms, now) => Effect.flatMap(driver.renewLease(id, token, ms, now), checkRun),
      dueTimers: (now, limit) => Effect.flatMap(driver.dueTimers(now, limit), checkRuns),
      ping: driver.ping
    }
  }
}

export { StorageError }
