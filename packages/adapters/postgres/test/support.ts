/** Test support: a fresh schema per suite on the located Postgres, and raw reads for the back door. */
import { randomBytes } from "node:crypto"
import type { Backdoor } from "@baton/adapter-conformance"
import type { ApiKeyRecord, EventRow, Idempotency } from "@baton/core"
import pg from "pg"

const INT8 = 20
// This pool's own parsers, not pg's global ones: the adapter must prove it parses bigint itself.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === INT8
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, format as "text")) as typeof pg.types.getTypeParser
}

export const freshSchema = (): string => `baton_t_${randomBytes(6).toString("hex")}`

export const rawPool = (url: string): pg.Pool => {
  const pool = new pg.Pool({ connectionString: url, max: 2, types })
  pool.on("error", () => {})
  return pool
}

export const dropSchema = async (pool: pg.Pool, schema: string): Promise<void> => {
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
}

type Query = (text: string, params: ReadonlyArray<unknown>) => Promise<ReadonlyArray<Record<string, unknown>>>

/** Reads what the adapter stored with plain SELECTs, not through its port methods. */
export const sqlBackdoor = (query: Query, schema: string): Backdoor => ({
  rawRun: async (id) => {
    const [row] = await query(`SELECT * FROM "${schema}".runs WHERE id = $1`, [id])
    if (row === undefined) return null
    const { claim_at: _claimAt, ...run } = row
    return run
  },
  rawEvents: async (id) =>
    (await query(
      `SELECT run_id, seq, type, created_at AS "timestamp", payload FROM "${schema}".events
       WHERE run_id = $1 ORDER BY seq`,
      [id]
    )) as ReadonlyArray<EventRow>,
  rawIdempotency: async (customerId, key) => {
    const [row] = await query(
      `SELECT customer_id, key, fingerprint, run_id, expires_at FROM "${schema}".idempotency_keys
       WHERE customer_id = $1 AND key = $2`,
      [customerId, key]
    )
    return (row ?? null) as Idempotency.IdempotencyRecord | null
  },
  rawKey: async (keyId) => {
    const [row] = await query(`SELECT * FROM "${schema}".api_keys WHERE key_id = $1`, [keyId])
    return (row ?? null) as ApiKeyRecord | null
  }
})

export const poolQuery =
  (pool: pg.Pool): Query =>
  async (text, params) =>
    (await pool.query(text, [...params])).rows
