/**
 * The reference adapter: every port over plain in-process maps. Each method
 * runs synchronously inside one Effect.sync, so it is atomic in a single JS
 * thread — the same guarantee a SQL transaction or a Lua script gives.
 * Rows are cloned on the way in and out, as a real store would (de)serialize.
 */
import {
  type ApiKeyRecord,
  Appended,
  Conflict,
  CreateResult,
  decideClaim,
  type EventFeedEncoded,
  type EventRow,
  type Idempotency,
  isAppendBatch,
  isTerminal,
  type KeyStoreEncoded,
  type ListCursor,
  makeHintHub,
  matchesListFilter,
  type RunRecord,
  type RunStoreEncoded
} from "@baton/core"
import { Effect } from "effect"

type IdempotencyRecord = Idempotency.IdempotencyRecord

const clone = <A>(a: A): A => structuredClone(a)

/** Raw reads of what was stored, for tests (the conformance suite's back door). */
export interface MemoryBackdoor {
  readonly rawRun: (runId: string) => RunRecord | null
  readonly rawEvents: (runId: string) => ReadonlyArray<EventRow>
  readonly rawIdempotency: (customerId: string, key: string) => IdempotencyRecord | null
  readonly rawKey: (keyId: string) => ApiKeyRecord | null
}

export interface MemoryStore {
  readonly runStore: RunStoreEncoded
  readonly eventFeed: EventFeedEncoded
  readonly keyStore: KeyStoreEncoded
  readonly backdoor: MemoryBackdoor
}

/** Newest first. */
const newestFirst = (a: RunRecord, b: RunRecord): number =>
  b.created_at - a.created_at || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0)

const afterCursor = (run: RunRecord, c: ListCursor): boolean =>
  run.created_at < c.createdAt || (run.created_at === c.createdAt && run.id < c.id)

export const makeMemoryStore = (): MemoryStore => {
  const runs = new Map<string, RunRecord>()
  const events = new Map<string, EventRow[]>()
  const idempotency = new Map<string, IdempotencyRecord>()
  const keys = new Map<string, ApiKeyRecord>()
  /** Runs not yet terminal: the only ones claim and sweeps look at. */
  const active = new Set<string>()
  const hints = makeHintHub()

  const write = (run: RunRecord, newEvents: ReadonlyArray<EventRow>) => {
    runs.set(run.id, run)
    const log = events.get(run.id) ?? []
    for (const e of newEvents) log.push(clone(e))
    events.set(run.id, log)
    if (isTerminal(run.status)) active.delete(run.id)
    else active.add(run.id)
    if (newEvents.length > 0) hints.publish(run.id, run.last_seq)
  }

  const idemKey = (customerId: string, key: string) => `${customerId}\u0000${key}`

  const runStore: RunStoreEncoded = {
    create: (req) =>
      Effect.sync(() => {
        if (req.idempotency !== null) {
          const k = idemKey(req.idempotency.customer_id, req.idempotency.key)
          const existing = idempotency.get(k)
          if (existing !== undefined && existing.expires_at > req.now) {
            if (existing.fingerprint !== req.idempotency.fingerprint)
              return CreateResult.KeyReused({ runId: existing.run_id })
            const run = runs.get(existing.run_id)
            if (run !== undefined) return CreateResult.Replayed({ run: clone(run) })
          }
          idempotency.set(k, clone(req.idempotency))
        }
        write(clone(req.run), req.events)
        return CreateResult.Created({ run: clone(req.run) })
      }),

    append: (runId, expect, newEvents, patch) =>
      Effect.sync(() => {
        const run = runs.get(runId)
        if (run === undefined || run.version !== expect.version) return Conflict
        if (expect.leaseToken !== null && run.lease_token !== expect.leaseToken) return Conflict
        // Seqs must continue the log exactly; anything else is a caller bug, refused like a race.
        if (!isAppendBatch(runId, newEvents, run.last_seq)) return Conflict
        write({ ...run, ...clone(patch), version: run.version + 1 }, newEvents)
        return Appended
      }),

    get: (runId) => Effect.sync(() => clone(runs.get(runId) ?? null)),

    list: (filter, cursor, limit) =>
      Effect.sync(() => {
        const matching = [...runs.values()]
          .filter((r) => matchesListFilter(r, filter) && (cursor === null || afterCursor(r, cursor)))
          .sort(newestFirst)
        return { runs: clone(matching.slice(0, limit)), hasMore: matching.length > limit }
      }),

    readEvents: (runId, afterSeq, limit) =>
      Effect.sync(() => {
        const log = events.get(runId) ?? []
        // seq n sits at index n - 1: the log is gapless by construction.
        return clone(log.slice(afterSeq, afterSeq + limit))
      }),

    claim: (req) =>
      Effect.sync(() => {
        const handlers = new Set(req.handlers)
        const sortKey = (r: RunRecord) => (r.status === "queued" ? r.available_at! : r.lease_expires_at!)
        const candidates = [...active]
          .map((id) => runs.get(id)!)
          .filter(
            (r) =>
              handlers.has(r.handler) &&
              ((r.status === "queued" && r.available_at !== null && r.available_at <= req.now) ||
                (r.status === "running" && r.lease_expires_at !== null && r.lease_expires_at <= req.now))
          )
          .sort((a, b) => sortKey(a) - sortKey(b) || (a.id < b.id ? -1 : 1))
        const claimed: RunRecord[] = []
        for (const run of candidates) {
          if (claimed.length >= req.max) break
          const decided = decideClaim(run, req)
          if (decided === null) continue
          const next = decided.next
          write(next, decided.events)
          if (next.status === "running") claimed.push(clone(next))
        }
        return claimed
      }),

    renewLease: (runId, leaseToken, leaseMs, now) =>
      Effect.sync(() => {
        const run = runs.get(runId)
        if (run === undefined || run.status !== "running" || run.lease_token !== leaseToken) return null
        const next = { ...run, lease_expires_at: now + leaseMs }
        runs.set(runId, next)
        return clone(next)
      }),

    dueTimers: (now, limit) =>
      Effect.sync(() => {
        const due: RunRecord[] = []
        for (const id of active) {
          if (due.length >= limit) break
          const r = runs.get(id)!
          if (
            (r.timer_at !== null && r.timer_at <= now) ||
            (r.status === "running" && r.lease_expires_at !== null && r.lease_expires_at <= now)
          )
            due.push(clone(r))
        }
        return due
      }),

    ping: () => Effect.void
  }

  const eventFeed: EventFeedEncoded = { subscribe: hints.subscribe }

  const keyStore: KeyStoreEncoded = {
    insert: (key) =>
      Effect.sync(() => {
        if (keys.has(key.key_id)) return false
        keys.set(key.key_id, clone(key))
        return true
      }),
    get: (keyId) => Effect.sync(() => clone(keys.get(keyId) ?? null)),
    list: (customerId) =>
      Effect.sync(() =>
        clone(
          [...keys.values()]
            .filter((k) => k.customer_id === customerId)
            .sort((a, b) => a.created_at - b.created_at)
        )
      ),
    revoke: (keyId, customerId, now) =>
      Effect.sync(() => {
        const key = keys.get(keyId)
        if (key === undefined || key.customer_id !== customerId) return null
        const next = key.revoked_at === null ? { ...key, revoked_at: now } : key
        keys.set(keyId, next)
        return clone(next)
      })
  }

  const backdoor: MemoryBackdoor = {
    rawRun: (id) => clone(runs.get(id) ?? null),
    rawEvents: (id) => clone(events.get(id) ?? []),
    rawIdempotency: (customerId, key) => clone(idempotency.get(idemKey(customerId, key)) ?? null),
    rawKey: (keyId) => clone(keys.get(keyId) ?? null)
  }

  return { runStore, eventFeed, keyStore, backdoor }
}
