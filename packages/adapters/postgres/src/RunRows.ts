/**
 * How a RunRecord maps to the `runs` table: one column per field. The
 * column kinds drive the SQL casts and the (de)serialisation, so the
 * statements, the encoder and the decoder cannot disagree.
 */
import type { EventRow, RunPatch, RunRecord } from "@baton/core"
import type { Row } from "./Executor.js"

type ColumnKind = "text" | "integer" | "bigint" | "json" | "jsonb"

export const RUN_COLUMNS = {
  id: "text",
  customer_id: "text",
  handler: "text",
  status: "text",
  version: "integer",
  last_seq: "integer",
  input: "json",
  metadata: "jsonb",
  output: "json",
  error: "json",
  awaiting_input: "json",
  limits: "json",
  usage: "json",
  created_at: "bigint",
  updated_at: "bigint",
  started_at: "bigint",
  finished_at: "bigint",
  worker_id: "text",
  open_steps: "json",
  cancel_requested: "json",
  last_signal: "json",
  deadline_at: "bigint",
  timer_at: "bigint",
  lease_token: "text",
  lease_expires_at: "bigint",
  available_at: "bigint"
} as const satisfies Record<keyof RunRecord, ColumnKind>

export type RunColumn = keyof typeof RUN_COLUMNS

export const RUN_COLUMN_NAMES = Object.keys(RUN_COLUMNS) as ReadonlyArray<RunColumn>

/** Fixed at creation: never in an UPDATE. */
const IDENTITY: ReadonlySet<RunColumn> = new Set([
  "id",
  "customer_id",
  "handler",
  "input",
  "limits",
  "created_at"
])

/** Columns an append or a claim may set. */
export const MUTABLE_COLUMNS: ReadonlyArray<RunColumn> = RUN_COLUMN_NAMES.filter((c) => !IDENTITY.has(c))

/** The SELECT list of a whole run. */
export const runColumnList = (alias = ""): string =>
  RUN_COLUMN_NAMES.map((c) => (alias === "" ? c : `${alias}.${c}`)).join(", ")

/** `$n::kind`: the placeholder of a column's value. */
export const placeholder = (column: RunColumn, n: number): string => `$${n}::${RUN_COLUMNS[column]}`

/** A column's value as a statement parameter: structured values travel as JSON text. */
export const encodeValue = (column: RunColumn, value: unknown): unknown => {
  const kind = RUN_COLUMNS[column]
  return kind === "json" || kind === "jsonb" ? JSON.stringify(value ?? null) : (value ?? null)
}

export const encodeRun = (run: RunRecord): ReadonlyArray<unknown> =>
  RUN_COLUMN_NAMES.map((c) => encodeValue(c, run[c]))

/** The patch's keys that name mutable columns, in column order (the append statement's shape). */
export const patchColumns = (patch: RunPatch): ReadonlyArray<RunColumn> =>
  MUTABLE_COLUMNS.filter((c) => c !== "version" && Object.hasOwn(patch, c))

/** A `runs` row as the port's RunRecord (the driver already parsed json and bigint). */
export const decodeRun = (row: Row): RunRecord => {
  const run: Record<string, unknown> = {}
  for (const c of RUN_COLUMN_NAMES) run[c] = row[c] ?? null
  return run as unknown as RunRecord
}

/** The four parallel arrays a statement reads events from (seq, type, created_at, payload as JSON text). */
export const encodeEvents = (events: ReadonlyArray<EventRow>): ReadonlyArray<ReadonlyArray<unknown>> => [
  events.map((e) => e.seq),
  events.map((e) => e.type),
  events.map((e) => e.timestamp),
  events.map((e) => JSON.stringify(e.payload))
]

/** Decided runs as the parameters of `writeDecided`: ids, one array per mutable column, then their events. */
export const encodeDecided = (
  decided: ReadonlyArray<{ readonly run: RunRecord; readonly events: ReadonlyArray<EventRow> }>
): ReadonlyArray<unknown> => {
  const events = decided.flatMap((d) => d.events)
  return [
    decided.map((d) => d.run.id),
    ...MUTABLE_COLUMNS.map((c) => decided.map((d) => encodeValue(c, d.run[c]))),
    events.map((e) => e.run_id),
    ...encodeEvents(events)
  ]
}

export const decodeEvent = (row: Row): EventRow =>
  ({
    run_id: row.run_id,
    seq: row.seq,
    type: row.type,
    timestamp: row.created_at,
    payload: row.payload
  }) as EventRow
