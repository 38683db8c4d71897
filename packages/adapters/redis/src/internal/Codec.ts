import type { RunRecord } from "@baton/core"

/**
 * Rows as Redis hashes: one hash field per row field, each value JSON. Lua
 * compares and sets whole values (version, lease token, status) as these
 * exact strings, and never decodes JSON itself (cjson would round numbers).
 */

/** `[field, json, field, json, …]` for HSET. */
export const toFieldPairs = (row: object): string[] => {
  const out: string[] = []
  for (const [field, value] of Object.entries(row)) {
    if (value !== undefined) out.push(field, JSON.stringify(value))
  }
  return out
}

/** An HGETALL reply (object form) back to a row; null when the hash does not exist. */
export const fromHash = (hash: Record<string, string>): Record<string, unknown> | null => {
  const fields = Object.keys(hash)
  if (fields.length === 0) return null
  const row: Record<string, unknown> = {}
  for (const field of fields) row[field] = JSON.parse(hash[field]!)
  return row
}

/** A flat `[field, value, …]` reply (what scripts return for HGETALL) to a row. */
export const fromFlat = (flat: ReadonlyArray<string>): Record<string, unknown> | null => {
  if (flat.length === 0) return null
  const row: Record<string, unknown> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) row[flat[i]!] = JSON.parse(flat[i + 1]!)
  return row
}

/** A raw JSON field value (as a script returned it) to a number, or null. */
export const numberOrNull = (raw: string | null | undefined): number | null => {
  if (raw === null || raw === undefined) return null
  const value: unknown = JSON.parse(raw)
  return typeof value === "number" ? value : null
}

export const stringOrNull = (raw: string | null | undefined): string | null => {
  if (raw === null || raw === undefined) return null
  const value: unknown = JSON.parse(raw)
  return typeof value === "string" ? value : null
}

/** The run hash's bookkeeping fields (recent write ids): not part of the row. */
const RUN_BOOKKEEPING = ["_writes", "_write"] as const

const withoutBookkeeping = (row: Record<string, unknown> | null): RunRecord | null => {
  if (row === null) return null
  for (const field of RUN_BOOKKEEPING) delete row[field]
  return row as unknown as RunRecord
}

export const runFromHash = (hash: Record<string, string>): RunRecord | null =>
  withoutBookkeeping(fromHash(hash))

export const runFromFlat = (flat: ReadonlyArray<string>): RunRecord | null =>
  withoutBookkeeping(fromFlat(flat))
