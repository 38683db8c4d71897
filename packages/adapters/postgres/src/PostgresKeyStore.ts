/** KeyStore over SQL: one statement per method. */
import type { ApiKeyRecord, KeyStoreEncoded } from "@baton/core"
import type { Row, SqlExecutor } from "./Executor.js"
import type { Statements } from "./Statements.js"
import { sql } from "./StorageErrors.js"

const decodeKey = (row: Row): ApiKeyRecord =>
  ({
    key_id: row.key_id,
    customer_id: row.customer_id,
    name: row.name ?? null,
    scopes: row.scopes,
    secret_hash: row.secret_hash,
    created_at: row.created_at,
    expires_at: row.expires_at ?? null,
    revoked_at: row.revoked_at ?? null
  }) as ApiKeyRecord

export const makeKeyStore = (db: SqlExecutor, st: Statements): KeyStoreEncoded => ({
  insert: (key) =>
    sql(async () => {
      const rows = await db.query(st.insertKey, [
        key.key_id,
        key.customer_id,
        JSON.stringify(key.name),
        JSON.stringify(key.scopes),
        key.secret_hash,
        key.created_at,
        key.expires_at,
        key.revoked_at
      ])
      return rows.length > 0
    }),
  get: (keyId) =>
    sql(async () => {
      const [row] = await db.query(st.getKey, [keyId])
      return row === undefined ? null : decodeKey(row)
    }),
  list: (customerId) => sql(async () => (await db.query(st.listKeys, [customerId])).map(decodeKey)),
  revoke: (keyId, customerId, now) =>
    sql(async () => {
      const [row] = await db.query(st.revokeKey, [keyId, customerId, now])
      return row === undefined ? null : decodeKey(row)
    })
})
