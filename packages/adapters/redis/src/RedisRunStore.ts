/**
 * RunStore over Redis. The run hash and its event list are the truth and are
 * only ever written by one per-run script (create_run, append, renew_lease),
 * each touching the run's one slot. The shared indexes (claim queues, timers,
 * per-customer list) are hints kept correct by the rules in internal/Indexes.ts.
 */
import { randomUUID } from "node:crypto"
import {
  Appended,
  Conflict,
  CreateResult,
  decideClaim,
  type EventRow,
  type Idempotency,
  isAppendBatch,
  isTerminal,
  matchesListFilter,
  type RunPatch,
  type RunRecord,
  type RunState,
  type RunStatus,
  type RunStoreEncoded,
  type StorageError,
  storageUnavailable
} from "@baton/core"
import { Effect, Either } from "effect"
import { numberOrNull, runFromFlat, runFromHash, stringOrNull, toFieldPairs } from "./internal/Codec.js"
import { attempt } from "./internal/Errors.js"
import {
  claimScore,
  hintScores,
  type Indexes,
  type IndexState,
  indexStateOf,
  timerScore,
  touchesIndexes
} from "./internal/Indexes.js"
import type { KeyLayout } from "./internal/Keys.js"
import type { RedisClient, Scripts } from "./internal/Scripts.js"

type IdempotencyRecord = Idempotency.IdempotencyRecord

export interface RunStoreSettings {
  readonly client: RedisClient
  readonly keys: KeyLayout
  readonly scripts: Scripts
  readonly indexes: Indexes
  /** PEXPIRE for a run and its events once terminal; null keeps them. */
  readonly finishedRunTtlMs: number | null
  /** An idempotency key outlives its `expires_at` by this much in Redis (clock skew). */
  readonly idempotencyGraceMs: number
  /** How long a replay waits for the run of a key another request is creating (default 5 s). */
  readonly replayWaitMs?: number
}

/**
 * A pending idempotency record (claimed, its run not yet seen stored) older than
 * this by Redis's clock, whose run is missing, belonged to a creator that died or
 * stalled: a replay voids that run id and takes the key over.
 */
export const PENDING_IDEMPOTENCY_MS = 30_000
/** How long a voided run id stays unstorable: far longer than any request can stall. */
export const VOID_TTL_MS = 48 * 3600_000
/** How long a replay waits for the run of a key another request is still creating. */
const REPLAY_WAIT_MS = 5_000
/** Rounds of claim → replay a create goes through before giving up with a 503. */
const CREATE_ROUNDS = 5
/** Members of the expiring set one sweep handles. */
const EXPIRING_SWEEP = 100

const malformed = () => storageUnavailable("The store returned a malformed run.")

const parseRow = <A>(parse: () => A | null): Effect.Effect<A | null, StorageError> =>
  Effect.try({ try: parse, catch: malformed })

const isDue = (r: RunRecord, now: number): boolean =>
  !isTerminal(r.status) &&
  ((r.timer_at !== null && r.timer_at <= now) ||
    (r.status === "running" && r.lease_expires_at !== null && r.lease_expires_at <= now))

/** Flattens ZRANGE … WITHSCORES into pairs. */
const pairs = (flat: ReadonlyArray<string>): Array<{ id: string; score: number }> => {
  const out: Array<{ id: string; score: number }> = []
  for (let i = 0; i + 1 < flat.length; i += 2) out.push({ id: flat[i]!, score: Number(flat[i + 1]) })
  return out
}

/** Immutable per run, so safe to remember: which claim queue a run belongs to. */
class HandlerCache {
  private readonly map = new Map<string, string>()
  constructor(private readonly capacity = 50_000) {}
  get(runId: string): string | undefined {
    return this.map.get(runId)
  }
  set(runId: string, handler: string): void {
    if (this.map.size >= this.capacity) {
      const oldest = this.map.keys().next()
      if (!oldest.done) this.map.delete(oldest.value)
    }
    this.map.set(runId, handler)
  }
}

interface Commit {
  readonly runId: string
  readonly guards: ReadonlyArray<readonly [string, string]>
  readonly events: ReadonlyArray<EventRow>
  readonly fields: Record<string, unknown>
  readonly terminal: boolean
}

export const makeRedisRunStore = (s: RunStoreSettings): RunStoreEncoded => {
  const { client, keys, scripts, indexes } = s
  const handlers = new HandlerCache()

  const readRun = (runId: string): Effect.Effect<RunRecord | null, StorageError> =>
    Effect.flatMap(
      attempt(() => client.hgetall(keys.run(runId))),
      (hash) => parseRow(() => runFromHash(hash))
    ).pipe(
      Effect.tap((run) => {
        if (run !== null) handlers.set(run.id, run.handler)
      })
    )

  const handlerOf = (runId: string): Effect.Effect<string | null, StorageError> => {
    const known = handlers.get(runId)
    if (known !== undefined) return Effect.succeed(known)
    return Effect.flatMap(
      attempt(() => client.hget(keys.run(runId), "handler")),
      (raw) => parseRow(() => stringOrNull(raw))
    )
  }

  /** One append script call; the run's index state after it, or null on a failed guard. */
  const commit = (c: Commit): Effect.Effect<IndexState | null, StorageError> => {
    const ttl = c.terminal && s.finishedRunTtlMs !== null ? s.finishedRunTtlMs : 0
    const args: Array<string | number> = [
      keys.run(c.runId),
      keys.events(c.runId),
      keys.feed(c.runId),
      c.events[0]?.seq ?? 0,
      c.events.length,
      c.guards.length,
      ttl,
      randomUUID()
    ]
    for (const e of c.events) args.push(JSON.stringify(e))
    for (const [field, raw] of c.guards) args.push(field, raw)
    args.push(...toFieldPairs(c.fields))
    return Effect.flatMap(
      attempt(() => scripts.append(...args)),
      (reply) =>
        reply[0] !== 1
          ? Effect.succeed(null)
          : Effect.tap(
              parseRow(
                (): IndexState => ({
                  status: JSON.parse(String(reply[1])) as RunStatus,
                  handler: stringOrNull(reply[2] as string) ?? "",
                  available_at: numberOrNull(reply[3] as string | null),
                  lease_expires_at: numberOrNull(reply[4] as string | null),
                  timer_at: numberOrNull(reply[5] as string | null),
                  version: numberOrNull(reply[6] as string | null) ?? 0
                })
              ),
              (state) => {
                // Retention: remember when this finished run's keys go, so a sweep can
                // drop its list entry then (and never before).
                const customer = stringOrNull(reply[7] as string | null)
                return ttl > 0 && state !== null && customer !== null
                  ? Effect.ignore(
                      attempt(() => scripts.markExpiring(keys.expiring, `${customer}:${c.runId}`, ttl))
                    )
                  : Effect.void
              }
            )
    )
  }

  /** Index upkeep after a write that succeeded: a failure only leaves a hint to reconcile. */
  const settleQuietly = (runId: string, state: IndexState) => Effect.ignore(indexes.settle(runId, state))

  const voidRunId = (runId: string) =>
    attempt(() => scripts.voidRunId(keys.run(runId), keys.voided(runId), VOID_TTL_MS))

  /**
   * An index entry whose run is missing: removed unless a live hint protects it
   * (a creator between its hint and create_run), then the id is voided so a
   * creator that was merely slow cannot store a run the indexes no longer name.
   * If the run turned up meanwhile, its entries are put back from its record.
   */
  const forgetMissing = (runId: string, handler: string | null): Effect.Effect<void, StorageError> =>
    Effect.gen(function* () {
      const removed = yield* indexes.remove(runId, handler)
      if (!removed) return
      if ((yield* voidRunId(runId)) === "voided") return
      const run = yield* readRun(runId)
      if (run !== null) yield* settleQuietly(runId, indexStateOf(run))
    })

  /** Drops the list entries of finished runs whose keys expired (retention); never a live run's. */
  const sweepExpiring = Effect.gen(function* () {
    const due = yield* attempt(() => scripts.dueExpiring(keys.expiring, EXPIRING_SWEEP))
    yield* Effect.forEach(
      due,
      (member) =>
        Effect.gen(function* () {
          const at = member.indexOf(":")
          const customer = member.slice(0, at)
          const runId = member.slice(at + 1)
          // Another node's clock may run behind: a run not yet gone waits for a later sweep.
          if ((yield* attempt(() => client.exists(keys.run(runId)))) === 1) return
          yield* attempt(() => client.zrem(keys.customerRuns(customer), runId))
          yield* attempt(() => client.zrem(keys.expiring, member))
        }),
      { concurrency: 16, discard: true }
    )
  })

  /** Waits for the run another request is creating under the same idempotency key. */
  const awaitRun = (runId: string): Effect.Effect<RunRecord | null, StorageError> =>
    Effect.gen(function* () {
      const deadline = Date.now() + (s.replayWaitMs ?? REPLAY_WAIT_MS)
      for (let delay = 2; ; delay = Math.min(delay * 2, 100)) {
        const run = yield* readRun(runId)
        if (run !== null || Date.now() >= deadline) return run
        yield* Effect.sleep(`${delay} millis`)
      }
    })

  const stillBeingCreated = () =>
    storageUnavailable("A request with this idempotency key is still being processed; retry shortly.")

  type Claimed =
    | { readonly _tag: "Claimed" }
    | { readonly _tag: "Done"; readonly result: CreateResult }
    | { readonly _tag: "Again" }

  /**
   * Takes the idempotency key for `req`'s run, or decides the create from the
   * record that holds it: its run (Replayed), another body (KeyReused), or —
   * when that run is missing and its creator can no longer store it — takes
   * the key over (Claimed).
   */
  const takeKey = (idem: IdempotencyRecord, now: number): Effect.Effect<Claimed, StorageError> =>
    Effect.gen(function* () {
      const recordKey = keys.idempotency(idem.customer_id, idem.key)
      const ttl =
        Math.max(1, Number.isFinite(idem.expires_at - now) ? idem.expires_at - now : 1) + s.idempotencyGraceMs
      const claimKey = (takeoverFrom: string) =>
        attempt(() =>
          scripts.claimIdempotencyKey(
            recordKey,
            idem.customer_id,
            idem.key,
            idem.fingerprint,
            idem.run_id,
            idem.expires_at,
            now,
            ttl,
            takeoverFrom
          )
        )
      const reply = yield* claimKey("")
      if (reply[0] !== "live") return { _tag: "Claimed" } as const
      const heldBy = reply[2] ?? ""
      if (reply[1] !== idem.fingerprint)
        return { _tag: "Done", result: CreateResult.KeyReused({ runId: heldBy }) } as const
      const pending = reply[4] === "pending"
      const replayed = (run: RunRecord) =>
        Effect.as(
          // Its creator may have failed before confirming: confirm for it.
          pending
            ? Effect.ignore(attempt(() => scripts.confirmIdempotencyKey(recordKey, heldBy)))
            : Effect.void,
          { _tag: "Done", result: CreateResult.Replayed({ run }) } as const
        )
      const existing = yield* readRun(heldBy)
      if (existing !== null) return yield* replayed(existing)
      if (pending && Number(reply[5]) < PENDING_IDEMPOTENCY_MS) {
        // Its creator is (most likely) between the key and create_run.
        const awaited = yield* awaitRun(heldBy)
        if (awaited !== null) return yield* replayed(awaited)
        return yield* Effect.fail(stillBeingCreated())
      }
      // Confirmed and missing (expired by retention, or deleted), or pending so long its
      // creator died or stalled: void the id in its own slot, then take the key over.
      if ((yield* voidRunId(heldBy)) === "exists") {
        const run = yield* readRun(heldBy)
        return run === null ? ({ _tag: "Again" } as const) : yield* replayed(run)
      }
      yield* Effect.ignore(attempt(() => client.zrem(keys.customerRuns(idem.customer_id), heldBy)))
      const taken = yield* claimKey(heldBy)
      return taken[0] === "live" ? ({ _tag: "Again" } as const) : ({ _tag: "Claimed" } as const)
    })

  const create: RunStoreEncoded["create"] = (req) =>
    Effect.gen(function* () {
      const run = req.run
      const idem = req.idempotency
      for (let round = 0; round < CREATE_ROUNDS; round++) {
        if (idem !== null) {
          const taken = yield* takeKey(idem, req.now)
          if (taken._tag === "Done") return taken.result
          if (taken._tag === "Again") continue
        }
        // Indexes first: a stored run always has its list entry and a claim hint.
        handlers.set(run.id, run.handler)
        yield* Effect.all(
          [
            attempt(() =>
              client.zadd(keys.customerRuns(run.customer_id), "NX", String(run.created_at), run.id)
            ),
            indexes.hint(run.id, run.handler, run.version, { claim: claimScore(run), timer: timerScore(run) })
          ],
          { concurrency: "unbounded" }
        )
        const args: Array<string | number> = [
          keys.run(run.id),
          keys.events(run.id),
          keys.voided(run.id),
          keys.feed(run.id),
          req.events.length
        ]
        for (const e of req.events) args.push(JSON.stringify(e))
        args.push(...toFieldPairs(run))
        // 0 (a run with this id exists) is this request's own write sent again after a
        // reconnect: ids are minted per request. The run is stored either way.
        const stored = yield* attempt(() => scripts.createRun(...args))
        if (stored === -1) {
          // The id was voided (a replay took the key over, or a reader dropped the run's
          // index entries): it can never be stored. Nothing of it may stay behind.
          yield* Effect.ignore(attempt(() => client.zrem(keys.customerRuns(run.customer_id), run.id)))
          if (idem === null) break
          const released = yield* attempt(() =>
            scripts.releaseIdempotencyKey(keys.idempotency(idem.customer_id, idem.key), run.id)
          )
          if (released === 1) break
          // The key names another run now: answer from it.
          continue
        }
        yield* settleQuietly(run.id, indexStateOf(run))
        if (idem === null) return CreateResult.Created({ run })
        // A failed confirm leaves the record pending, never lapsing: a replay confirms it.
        const confirmed = yield* Effect.either(
          attempt(() => scripts.confirmIdempotencyKey(keys.idempotency(idem.customer_id, idem.key), run.id))
        )
        if (Either.isLeft(confirmed) || confirmed.right === 1) return CreateResult.Created({ run })
        // The record names another run (ours outlived its expires_at): answer from it.
      }
      return yield* Effect.fail(storageUnavailable("The run could not be stored; retry the request."))
    })

  const append: RunStoreEncoded["append"] = (runId, expect, events, patch) =>
    Effect.gen(function* () {
      // Seqs must be contiguous among themselves; the script checks they continue the log.
      if (!isAppendBatch(runId, events)) return Conflict
      const version = expect.version + 1
      const indexed = touchesIndexes(patch)
      if (indexed) {
        const handler = yield* handlerOf(runId)
        if (handler === null) return Conflict
        yield* indexes.hint(runId, handler, version, hintScores(patch))
      }
      const guards: Array<readonly [string, string]> = [["version", JSON.stringify(expect.version)]]
      if (expect.leaseToken !== null) guards.push(["lease_token", JSON.stringify(expect.leaseToken)])
      const state = yield* commit({
        runId,
        guards,
        events,
        fields: { ...patch, version },
        terminal: patch.status !== undefined && isTerminal(patch.status)
      })
      if (state === null) return Conflict
      if (indexed) yield* settleQuietly(runId, state)
      return Appended
    })

  const get: RunStoreEncoded["get"] = readRun

  /**
   * Keyset paging over the list index, newest first: each page starts at the last
   * (score, id) seen, so nothing is skipped or repeated while runs are created.
   * An entry whose run is missing (a create in flight, or a run expired by
   * retention and not yet swept) is skipped, never removed here.
   */
  const list: RunStoreEncoded["list"] = (filter, cursor, limit) =>
    Effect.gen(function* () {
      const key = keys.customerRuns(filter.customerId)
      const min = filter.createdAfter === undefined ? "-inf" : String(filter.createdAfter)
      let last: { score: number; id: string } | null =
        cursor === null ? null : { score: cursor.createdAt, id: cursor.id }
      let max: string = last === null ? "+inf" : String(last.score)
      if (filter.createdBefore !== undefined && (last === null || filter.createdBefore <= last.score))
        max = `(${filter.createdBefore}`
      let batch = Math.max(limit + 1, 64)
      const found: RunRecord[] = []
      while (found.length <= limit) {
        const page = pairs(
          yield* attempt(() =>
            client.zrange(key, max, min, "BYSCORE", "REV", "LIMIT", 0, batch, "WITHSCORES")
          )
        )
        const bound = last
        const fresh = page.filter(
          (p) => bound === null || p.score < bound.score || (p.score === bound.score && p.id < bound.id)
        )
        if (fresh.length === 0) {
          // A full page of entries tied at the bound, all seen: read more of them at once.
          if (page.length < batch) break
          batch *= 2
          continue
        }
        const runs = yield* Effect.forEach(fresh, (p) => readRun(p.id), { concurrency: "unbounded" })
        for (const [i, run] of runs.entries()) {
          last = fresh[i]!
          if (run !== null && matchesListFilter(run, filter)) found.push(run)
          if (found.length > limit) break
        }
        if (page.length < batch) break
        max = String(last!.score)
      }
      return { runs: found.slice(0, limit), hasMore: found.length > limit }
    })

  const readEvents: RunStoreEncoded["readEvents"] = (runId, afterSeq, limit) =>
    Effect.flatMap(
      // seq n sits at index n - 1: the log is gapless by construction.
      attempt(() => client.lrange(keys.events(runId), afterSeq, afterSeq + limit - 1)),
      (rows) =>
        Effect.try({
          try: () => rows.map((row) => JSON.parse(row) as EventRow),
          catch: () => storageUnavailable("The store returned a malformed event.")
        })
    )

  /** Writes one claim decision under compare-and-set on what was read; the run, or null if another writer won. */
  const commitClaim = (read: RunRecord, decision: Extract<RunState.Decision, { _tag: "Transition" }>) =>
    Effect.gen(function* () {
      const guards: Array<readonly [string, string]> = [
        ["version", JSON.stringify(read.version)],
        ["status", JSON.stringify(read.status)],
        ["lease_token", JSON.stringify(read.lease_token)],
        ["lease_expires_at", JSON.stringify(read.lease_expires_at)],
        ["available_at", JSON.stringify(read.available_at)]
      ]
      const state = yield* commit({
        runId: read.id,
        guards,
        events: decision.events,
        fields: { ...decision.patch, version: decision.next.version },
        terminal: isTerminal(decision.next.status)
      })
      if (state === null) return null
      yield* settleQuietly(read.id, state)
      return decision.next
    })

  const claim: RunStoreEncoded["claim"] = (req) =>
    Effect.gen(function* () {
      const claimed: RunRecord[] = []
      const seen = new Set<string>()
      // Reconciled entries leave the range, so every round reads from the start and skips what it saw.
      // The first round reads as many runs as are wanted (each is a read of its hash): entries that
      // turn out not claimable (stale hints) make the next rounds read more, twice as many each time.
      for (let round = 0, batch = req.max; claimed.length < req.max && round < 8; round++, batch *= 2) {
        const window = seen.size + batch
        const perHandler = yield* Effect.forEach(
          req.handlers,
          (handler) =>
            Effect.map(
              attempt(() =>
                client.zrange(
                  keys.claimQueue(handler).zset,
                  "-inf",
                  String(req.now),
                  "BYSCORE",
                  "LIMIT",
                  0,
                  window,
                  "WITHSCORES"
                )
              ),
              (flat) => pairs(flat).map((p) => ({ ...p, handler }))
            ),
          { concurrency: "unbounded" }
        )
        const candidates = perHandler
          .flat()
          .filter((c) => !seen.has(c.id))
          .sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        if (candidates.length === 0) break
        for (const c of candidates) seen.add(c.id)
        const records = yield* Effect.forEach(candidates, (c) => readRun(c.id), { concurrency: "unbounded" })
        let i = 0
        while (i < candidates.length && claimed.length < req.max) {
          const wave: Array<Effect.Effect<RunRecord | null, StorageError>> = []
          while (i < candidates.length && wave.length < req.max - claimed.length) {
            const candidate = candidates[i]!
            const run = records[i]!
            i++
            if (run === null) {
              yield* Effect.ignore(forgetMissing(candidate.id, candidate.handler))
              continue
            }
            const decided = decideClaim(run, req)
            if (decided === null) {
              // Not claimable now: put its entry where the record says it belongs.
              yield* settleQuietly(run.id, indexStateOf(run))
              continue
            }
            wave.push(commitClaim(run, decided))
          }
          const results = yield* Effect.all(wave, { concurrency: "unbounded" })
          for (const next of results) if (next !== null && next.status === "running") claimed.push(next)
        }
        if (perHandler.every((page) => page.length < window)) break
      }
      return claimed
    })

  const renewLease: RunStoreEncoded["renewLease"] = (runId, leaseToken, leaseMs, now) =>
    Effect.gen(function* () {
      const expires = now + leaseMs
      const flat = yield* attempt(() =>
        scripts.renewLease(keys.run(runId), JSON.stringify(leaseToken), JSON.stringify(expires))
      )
      const run = yield* parseRow(() => runFromFlat(flat))
      // A released lease (expiring now) makes the run claimable at once: say so in the
      // indexes. A longer lease needs nothing: the old, earlier score is reconciled later.
      if (run !== null && expires <= now) yield* settleQuietly(runId, indexStateOf(run))
      return run
    })

  const dueTimers: RunStoreEncoded["dueTimers"] = (now, limit) =>
    Effect.gen(function* () {
      yield* Effect.ignore(sweepExpiring)
      const due: RunRecord[] = []
      const seen = new Set<string>()
      const batch = Math.max(limit, 64)
      for (let round = 0; due.length < limit && round < 8; round++) {
        const window = seen.size + batch
        const all = pairs(
          yield* attempt(() =>
            client.zrange(keys.timers.zset, "-inf", String(now), "BYSCORE", "LIMIT", 0, window, "WITHSCORES")
          )
        )
        const page = all.filter((p) => !seen.has(p.id))
        if (page.length === 0) break
        for (const p of page) seen.add(p.id)
        const runs = yield* Effect.forEach(page, (p) => readRun(p.id), { concurrency: "unbounded" })
        for (const [j, run] of runs.entries()) {
          if (run === null)
            yield* Effect.ignore(forgetMissing(page[j]!.id, handlers.get(page[j]!.id) ?? null))
          else if (isDue(run, now)) {
            if (due.length < limit) due.push(run)
          } else yield* settleQuietly(run.id, indexStateOf(run))
        }
        if (all.length < window) break
      }
      return due
    })

  const ping: RunStoreEncoded["ping"] = () => Effect.asVoid(attempt(() => client.ping()))

  return { create, append, get, list, readEvents, claim, renewLease, dueTimers, ping }
}

export type { RunPatch }
