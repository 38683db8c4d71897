/**
 * The key layout. Every key of one run carries the run id as its hash tag,
 * so each per-run script touches one cluster slot. Shared indexes carry their
 * own tag (a handler, a customer, "timers"): on a cluster they live in other
 * slots than the runs they point at, which is why they are only hints.
 */

import { createHash } from "node:crypto"

/**
 * Letters, digits and `_.:-`: no braces, so a prefix never becomes a hash tag.
 * Two deployments sharing one Redis need prefixes that do not overlap: neither
 * may be the other followed by `:` (`a` and `a:x`), or a `SCAN a:*` clean-up
 * of one would match the other's keys.
 */
export const PREFIX_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/

export interface IndexKeys {
  /** Sorted set: member run id, score the epoch ms the run needs attention. */
  readonly zset: string
  /** Hash: member run id → "version:written_at" of the latest hint or settle. */
  readonly versions: string
}

export interface KeyLayout {
  readonly prefix: string
  readonly run: (runId: string) => string
  readonly events: (runId: string) => string
  /** Pub/sub channel carrying `last_seq` hints for one run. */
  readonly feed: (runId: string) => string
  /** Runs a worker of `handler` may claim, by claimable time. */
  readonly claimQueue: (handler: string) => IndexKeys
  /** Runs whose timer or lease comes due, by due time. */
  readonly timers: IndexKeys
  /** A customer's runs by `created_at` (ties by id): the list index. */
  readonly customerRuns: (customerId: string) => string
  /** SHA-256 of (customer, key): the user's key never shapes the Redis key (nor picks its slot). */
  readonly idempotency: (customerId: string, key: string) => string
  /** A voided run id's tombstone: create_run of that id fails (in the run's slot). */
  readonly voided: (runId: string) => string
  /** `<customer>:<runId>` of finished runs whose keys expire, by expiry (Redis's clock). */
  readonly expiring: string
  readonly apiKey: (keyId: string) => string
  /** A customer's key ids by `created_at`. */
  readonly customerKeys: (customerId: string) => string
}

const index = (base: string): IndexKeys => ({ zset: base, versions: `${base}:v` })

export const keyLayout = (prefix: string): KeyLayout => ({
  prefix,
  run: (id) => `${prefix}:run:{${id}}`,
  events: (id) => `${prefix}:events:{${id}}`,
  feed: (id) => `${prefix}:feed:{${id}}`,
  claimQueue: (handler) => index(`${prefix}:claim:{h:${handler}}`),
  timers: index(`${prefix}:{timers}`),
  customerRuns: (customer) => `${prefix}:runs:{c:${customer}}`,
  idempotency: (customer, key) =>
    `${prefix}:idem:${createHash("sha256").update(`${customer}\u0000${key}`).digest("hex")}`,
  voided: (id) => `${prefix}:void:{${id}}`,
  expiring: `${prefix}:{expiring}`,
  apiKey: (keyId) => `${prefix}:key:{${keyId}}`,
  customerKeys: (customer) => `${prefix}:keys:{c:${customer}}`
})
