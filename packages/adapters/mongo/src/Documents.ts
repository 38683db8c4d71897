/**
 * How port rows map to MongoDB documents, both ways.
 *
 * Values that carry user data (input, output, waits, errors, signals, event
 * payloads, metadata) are stored as JSON text in a `<field>_json` string:
 * BSON cannot hold an unpaired surrogate (the driver turns it into U+FFFD),
 * and field names with `.` or a leading `$` are refused or misread by update
 * operators and queries. JSON text keeps the client's value exactly, key
 * order included. Everything the adapter queries or sorts on is a plain
 * field: ids, status, handler, version, seq and the epoch-ms timestamps.
 */
import type { ApiKeyRecord, EventRow, Idempotency, RunPatch, RunRecord } from "@baton/core"

/**
 * How each RunRecord field is stored: `_id` (the run id), `plain` (as it is:
 * strings, numbers, null, and the all-number `limits` and `usage`), or `json`
 * (JSON text in `<field>_json`). `satisfies` makes a field added to core
 * without a mapping here a compile error.
 */
const FIELD_KINDS = {
  id: "_id",
  customer_id: "plain",
  handler: "plain",
  status: "plain",
  version: "plain",
  last_seq: "plain",
  input: "json",
  metadata: "json",
  output: "json",
  error: "json",
  awaiting_input: "json",
  limits: "plain",
  usage: "plain",
  created_at: "plain",
  updated_at: "plain",
  started_at: "plain",
  finished_at: "plain",
  worker_id: "plain",
  open_steps: "json",
  cancel_requested: "json",
  last_signal: "json",
  deadline_at: "plain",
  timer_at: "plain",
  lease_token: "plain",
  lease_expires_at: "plain",
  available_at: "plain"
} as const satisfies Record<keyof RunRecord, "_id" | "plain" | "json">

type RunField = keyof typeof FIELD_KINDS
const RUN_FIELDS = Object.keys(FIELD_KINDS) as ReadonlyArray<RunField>

/** Fixed at creation: never in an update. */
const IDENTITY: ReadonlySet<RunField> = new Set<RunField>([
  "id",
  "customer_id",
  "handler",
  "input",
  "limits",
  "created_at"
])

/** A document of the `runs` collection. `_id` is the run id. */
export interface RunDocument {
  readonly _id: string
  readonly customer_id: string
  readonly handler: string
  readonly status: RunRecord["status"]
  readonly version: number
  readonly last_seq: number
  readonly input_json: string
  readonly metadata_json: string
  /** `key U+0000 JSON(value)` per metadata pair: what list filters match. */
  readonly metadata_terms: ReadonlyArray<string>
  readonly output_json: string
  readonly error_json: string
  readonly awaiting_input_json: string
  readonly limits: RunRecord["limits"]
  readonly usage: RunRecord["usage"]
  readonly created_at: number
  readonly updated_at: number
  readonly started_at: number | null
  readonly finished_at: number | null
  readonly worker_id: string | null
  readonly open_steps_json: string
  readonly cancel_requested_json: string
  readonly last_signal_json: string
  readonly deadline_at: number | null
  readonly timer_at: number | null
  readonly lease_token: string | null
  readonly lease_expires_at: number | null
  readonly available_at: number | null
  /** `available_at` while queued, `lease_expires_at` while running, else null: the claim order. */
  readonly claim_at: number | null
}

const jsonName = (field: RunField): string => `${field}_json`

/** Metadata pairs as index terms `key U+0000 JSON(value)`: exact and type-sensitive (1 ≠ "1" ≠ true). */
export const metadataTerm = (key: string, value: string | number | boolean): string =>
  `${key}\u0000${JSON.stringify(value)}`

const metadataTerms = (metadata: RunRecord["metadata"]): ReadonlyArray<string> =>
  Object.entries(metadata).map(([k, v]) => metadataTerm(k, v))

/**
 * When a claim may take the run: `available_at` while queued, `lease_expires_at`
 * while running, never otherwise. One indexed field orders both kinds of claim.
 */
export const claimAtOf = (
  run: Pick<RunRecord, "status" | "available_at" | "lease_expires_at">
): number | null =>
  run.status === "queued" ? run.available_at : run.status === "running" ? run.lease_expires_at : null

/** The fields whose change can move `claim_at`. */
export const CLAIM_INPUTS: ReadonlyArray<keyof RunRecord> = ["status", "available_at", "lease_expires_at"]

/** The document fields one RunRecord field is stored in. */
const encodeField = (field: RunField, value: unknown, into: Record<string, unknown>): void => {
  switch (FIELD_KINDS[field]) {
    case "_id":
      into._id = value
      return
    case "json":
      into[jsonName(field)] = JSON.stringify(value ?? null)
      // Metadata is also an index: one term per pair, matched by list filters.
      if (field === "metadata") into.metadata_terms = metadataTerms((value ?? {}) as RunRecord["metadata"])
      return
    case "plain":
      into[field] = value ?? null
  }
}

export const encodeRun = (run: RunRecord): RunDocument => {
  const doc: Record<string, unknown> = {}
  for (const field of RUN_FIELDS) encodeField(field, run[field], doc)
  doc.claim_at = claimAtOf(run)
  return doc as unknown as RunDocument
}

/** The `$set` of a patch: its keys that name mutable fields, encoded (`version` is never in a patch). */
export const encodePatch = (patch: RunPatch): Record<string, unknown> => {
  const set: Record<string, unknown> = {}
  for (const field of RUN_FIELDS)
    if (!IDENTITY.has(field) && field !== "version" && Object.hasOwn(patch, field))
      encodeField(field, (patch as Record<string, unknown>)[field], set)
  return set
}

/** The `$set` that turns a stored run into `next`: every mutable field, `version` and `claim_at`. */
export const encodeReplacement = (next: RunRecord): Record<string, unknown> => {
  const set: Record<string, unknown> = {}
  for (const field of RUN_FIELDS) if (!IDENTITY.has(field)) encodeField(field, next[field], set)
  set.claim_at = claimAtOf(next)
  return set
}

const parseJson = (text: unknown): unknown => (typeof text === "string" ? JSON.parse(text) : null)

/** A `runs` document as the port's RunRecord; RunStore.makeEncoded validates it. */
export const decodeRun = (stored: RunDocument): RunRecord => {
  const doc = stored as unknown as Record<string, unknown>
  const run: Record<string, unknown> = {}
  for (const field of RUN_FIELDS) {
    const kind = FIELD_KINDS[field]
    run[field] =
      kind === "_id" ? doc._id : kind === "json" ? parseJson(doc[jsonName(field)]) : (doc[field] ?? null)
  }
  return run as unknown as RunRecord
}

/** A document of the `events` collection: unique on `(run_id, seq)`. */
export interface EventDocument {
  readonly run_id: string
  readonly seq: number
  readonly type: string
  readonly timestamp: number
  readonly payload_json: string
}

export const encodeEvent = (e: EventRow): EventDocument => ({
  run_id: e.run_id,
  seq: e.seq,
  type: e.type,
  timestamp: e.timestamp,
  payload_json: JSON.stringify(e.payload)
})

export const decodeEvent = (doc: EventDocument): EventRow =>
  ({
    run_id: doc.run_id,
    seq: doc.seq,
    type: doc.type,
    timestamp: doc.timestamp,
    payload: parseJson(doc.payload_json)
  }) as EventRow

/**
 * A document of the `idempotency` collection: unique on `(customer_id, key)`.
 * `expires_at` is a Date for the TTL index, an hour past the record's expiry:
 * the server deletes by its own clock, and a record must not vanish while an
 * engine whose clock runs behind still counts it. `expires_at_ms` is the
 * port's number, the one every decision reads.
 */
export interface IdempotencyDocument {
  readonly customer_id: string
  readonly key: string
  readonly fingerprint: string
  readonly run_id: string
  readonly expires_at: Date
  readonly expires_at_ms: number
}

/** How long past its expiry the server keeps an idempotency record. */
export const TTL_GRACE_MS = 3_600_000

export const encodeIdempotency = (r: Idempotency.IdempotencyRecord): IdempotencyDocument => ({
  customer_id: r.customer_id,
  key: r.key,
  fingerprint: r.fingerprint,
  run_id: r.run_id,
  expires_at: new Date(r.expires_at + TTL_GRACE_MS),
  expires_at_ms: r.expires_at
})

export const decodeIdempotency = (doc: IdempotencyDocument): Idempotency.IdempotencyRecord => ({
  customer_id: doc.customer_id,
  key: doc.key,
  fingerprint: doc.fingerprint,
  run_id: doc.run_id,
  expires_at: doc.expires_at_ms
})

/** A document of the `api_keys` collection. `_id` is the key id; only the secret's hash is stored. */
export type KeyDocument = Omit<ApiKeyRecord, "key_id"> & { readonly _id: string }

export const encodeKey = (k: ApiKeyRecord): KeyDocument => {
  const { key_id, ...rest } = k
  return { _id: key_id, ...rest }
}

export const decodeKey = (doc: KeyDocument): ApiKeyRecord => ({
  key_id: doc._id,
  customer_id: doc.customer_id,
  name: doc.name ?? null,
  scopes: doc.scopes,
  secret_hash: doc.secret_hash,
  created_at: doc.created_at,
  expires_at: doc.expires_at ?? null,
  revoked_at: doc.revoked_at ?? null
})
