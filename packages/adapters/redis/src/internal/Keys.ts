/**
 * The key layout. Every key of one run carries the run id as its hash tag,
 * so each per-run script touches one cluster slot. Shared indexes carry their
 * own tag (a handler, a customer, "timers"): on a cluster they live in other
 * slots than the runs they point at, which is why they are only hints.
 */

/** Letters, digits and `_.:-`: no braces, so a prefix never becomes a hash tag. */
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
  readonly idempotency: (customerId: string, key: string) => string
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
  // Customer ids hold no ':' (CUSTOMER_ID_PATTERN), so the pair is unambiguous.
  idempotency: (customer, key) => `${prefix}:idem:${customer}:${key}`,
  apiKey: (keyId) => `${prefix}:key:{${keyId}}`,
  customerKeys: (customer) => `${prefix}:keys:{c:${customer}}`
})
