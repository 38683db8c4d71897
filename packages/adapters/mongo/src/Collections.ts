/**
 * Baton's four collections and their indexes. Indexes are created at start
 * with fixed names; creating an index that exists with the same keys and
 * options is a no-op in MongoDB, so every process may do it on every start.
 */
import type { Collection, Db, IndexDescription } from "mongodb"
import type { EventDocument, IdempotencyDocument, KeyDocument, RunDocument } from "./Documents.js"

export const COLLECTION_NAMES = {
  runs: "runs",
  events: "events",
  idempotency: "idempotency",
  apiKeys: "api_keys"
} as const

export interface Collections {
  readonly runs: Collection<RunDocument>
  readonly events: Collection<EventDocument>
  readonly idempotency: Collection<IdempotencyDocument>
  readonly apiKeys: Collection<KeyDocument>
}

export const collectionsOf = (db: Db): Collections => ({
  runs: db.collection<RunDocument>(COLLECTION_NAMES.runs),
  events: db.collection<EventDocument>(COLLECTION_NAMES.events),
  idempotency: db.collection<IdempotencyDocument>(COLLECTION_NAMES.idempotency),
  apiKeys: db.collection<KeyDocument>(COLLECTION_NAMES.apiKeys)
})

/** Every index, by collection: the documentation table in docs/adapters/mongo.md lists the same. */
export const INDEXES: Readonly<Record<keyof Collections, ReadonlyArray<IndexDescription>>> = {
  runs: [
    // claim: the runs of the worker's handlers whose claim_at passed, oldest first.
    { name: "runs_claim", key: { handler: 1, claim_at: 1, _id: 1 } },
    // dueTimers: input timeouts and deadlines…
    { name: "runs_timer", key: { timer_at: 1 } },
    // …and expired leases.
    { name: "runs_lease", key: { status: 1, lease_expires_at: 1 } },
    // list: a customer's runs, newest first, with a stable cursor.
    { name: "runs_list", key: { customer_id: 1, created_at: -1, _id: -1 } },
    // list filtered by metadata pairs.
    { name: "runs_metadata", key: { customer_id: 1, metadata_terms: 1 } }
  ],
  events: [{ name: "events_run_seq", key: { run_id: 1, seq: 1 }, unique: true }],
  idempotency: [
    { name: "idempotency_customer_key", key: { customer_id: 1, key: 1 }, unique: true },
    // Expired records are dead weight: the server deletes them (within a minute or so of expiry).
    { name: "idempotency_ttl", key: { expires_at: 1 }, expireAfterSeconds: 0 }
  ],
  apiKeys: [{ name: "api_keys_customer", key: { customer_id: 1, created_at: 1, _id: 1 } }]
}

/** Creates every collection's indexes (idempotent). */
export const ensureIndexes = async (collections: Collections): Promise<void> => {
  await collections.runs.createIndexes([...INDEXES.runs])
  await collections.events.createIndexes([...INDEXES.events])
  await collections.idempotency.createIndexes([...INDEXES.idempotency])
  await collections.apiKeys.createIndexes([...INDEXES.apiKeys])
}
