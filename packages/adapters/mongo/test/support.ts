/** Test support: fresh databases, and raw reads of what the adapter stored (the suite's back door). */
import { randomBytes } from "node:crypto"
import type { Backdoor } from "@baton/adapter-conformance"
import { COLLECTION_NAMES } from "@baton/adapter-mongo"
import type { ApiKeyRecord, EventRow, Idempotency } from "@baton/core"
import type { Db, Document } from "mongodb"

export const freshDatabase = (): string => `baton_t_${randomBytes(6).toString("hex")}`

const BATON_COLLECTIONS = Object.values(COLLECTION_NAMES)

/** Drops a test database; the emulator has no dropDatabase, so Baton's collections are dropped one by one. */
export const dropDatabase = async (db: Db): Promise<void> => {
  try {
    await db.dropDatabase()
  } catch {
    for (const name of BATON_COLLECTIONS) await db.dropCollection(name).catch(() => {})
  }
}

/** Removes every document and keeps the collections and their indexes. */
export const emptyCollections = async (db: Db): Promise<void> => {
  for (const name of BATON_COLLECTIONS) await db.collection(name).deleteMany({})
}

/**
 * A run document read back the way the docs describe it, written apart from
 * the adapter's own decoder: `_id` is the id, every `<field>_json` string is
 * parsed into `<field>`, and the adapter's index fields are dropped.
 */
export const runFromDocument = (doc: Document): Record<string, unknown> => {
  const run: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(doc)) {
    if (name === "_id") run.id = value
    else if (name === "claim_at" || name === "metadata_terms") continue
    else if (name.endsWith("_json")) run[name.slice(0, -"_json".length)] = JSON.parse(value as string)
    else run[name] = value
  }
  return run
}

export const mongoBackdoor = (db: Db): Backdoor => ({
  rawRun: async (id) => {
    const doc = await db.collection("runs").findOne({ _id: id as never })
    return doc === null ? null : runFromDocument(doc)
  },
  rawEvents: async (id) =>
    (await db.collection("events").find({ run_id: id }).sort({ seq: 1 }).toArray()).map(
      (d): EventRow => ({
        run_id: d.run_id,
        seq: d.seq,
        type: d.type,
        timestamp: d.timestamp,
        payload: JSON.parse(d.payload_json)
      })
    ),
  rawIdempotency: async (customerId, key) => {
    const d = await db.collection("idempotency").findOne({ customer_id: customerId, key })
    if (d === null) return null
    const record: Idempotency.IdempotencyRecord = {
      customer_id: d.customer_id,
      key: d.key,
      fingerprint: d.fingerprint,
      run_id: d.run_id,
      expires_at: d.expires_at_ms
    }
    return record
  },
  rawKey: async (keyId) => {
    const d = await db.collection("api_keys").findOne({ _id: keyId as never })
    if (d === null) return null
    const { _id, ...rest } = d
    return { key_id: _id, ...rest } as unknown as ApiKeyRecord
  }
})
