/**
 * The history checker. Tests record every event every client saw (per
 * connection, as the server sent it) and, once the runs are over, each run's
 * log and its `GET /runs/{id}`; this module checks the per-run invariants of
 * SPEC §1, §2 and §5 on them and reports every violation it finds:
 *
 * - a client's stream, across all its connections and instances, is gapless,
 *   duplicate-free and in order: seq 1, 2, 3, … with each resumed connection
 *   starting right after its `Last-Event-ID`;
 * - it holds exactly one terminal event, and that event is its last;
 * - every event a client saw is the log's event at that seq (one total order
 *   per run, whichever instance served it);
 * - the log itself satisfies the same, and `GET /runs/{id}` equals the fold
 *   of the log (`RunState.fold` over the creation-time record, then
 *   `toPublicRun`) on every field of the public run — see FOLD_FIELDS.
 */
import { isDeepStrictEqual } from "node:util"
import type { EventRow, JsonValue, Run } from "@baton/core"
import { isTerminalEventType, type Limits, RunState, toPublicRun } from "@baton/core"

export interface ObservedEvent {
  readonly seq: number
  readonly type: string
  readonly timestamp: string
  readonly payload: { readonly redacted: boolean; readonly value: unknown }
}

/** One SSE connection of a client. */
export interface Connection {
  readonly instance: string
  /** The `Last-Event-ID` it was opened with (0: none). */
  readonly lastEventId: number
  readonly events: ObservedEvent[]
  /** How it ended, for messages. */
  end: string
}

/** Everything one client saw of one run's stream. */
export interface StreamHistory {
  readonly client: string
  readonly runId: string
  readonly connections: Connection[]
  /** The client received a terminal event. */
  complete: boolean
  /** Why the client gave up, when it did. */
  failure: string | null
}

/** A run as the API returns it once it is over: its `GET /runs/{id}` body and its whole log. */
export interface RunSnapshot {
  readonly run: Readonly<Record<string, unknown>>
  readonly log: ReadonlyArray<ObservedEvent>
}

export type ViolationKind =
  | "gap"
  | "duplicate"
  | "out_of_order"
  | "no_terminal"
  | "several_terminals"
  | "terminal_not_last"
  | "differs_from_log"
  | "not_terminal"
  | "fold_mismatch"
  | "unknown_run"

export interface Violation {
  readonly kind: ViolationKind
  readonly runId: string
  /** The client whose stream broke the invariant; null for the run's own log and GET. */
  readonly client: string | null
  readonly message: string
}

export const isTerminalType = (type: string): boolean => isTerminalEventType(type)

/**
 * The public run's fields that the fold of the log determines, all compared. The identity fields
 * (`id`, `handler`, `input`, `limits`, `created_at`) are fixed at creation and seed the fold, so they
 * are compared too but can only differ if GET disagrees with itself. Not compared: `request_id`
 * (per response), and nothing else — the lease group (`lease_token`, `lease_expires_at`,
 * `available_at`), `worker_id`, `open_steps`, `deadline_at` and `timer_at` are in the stored record
 * only, never in the public run.
 */
export const FOLD_FIELDS = [
  "status",
  "metadata",
  "output",
  "error",
  "awaiting_input",
  "usage",
  "last_seq",
  "cancel_requested",
  "started_at",
  "finished_at",
  "updated_at"
] as const
const IDENTITY_FIELDS = ["id", "handler", "input", "limits", "created_at"] as const

const show = (value: unknown): string => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 300 ? `${text.slice(0, 297)}...` : text
}

/**
 * Checks a sequence of events as one stream from its start: seqs 1, 2, 3, …,
 * exactly one terminal event and it is the last. `complete` says the sequence
 * is meant to hold the whole run (a terminal event must be there).
 */
const checkSequence = (
  events: ReadonlyArray<ObservedEvent>,
  complete: boolean,
  at: { runId: string; client: string | null },
  where: (index: number) => string
): Violation[] => {
  const violations: Violation[] = []
  const add = (kind: ViolationKind, message: string) => violations.push({ kind, ...at, message })
  const seen = new Set<number>()
  let previous = 0
  let terminals = 0
  for (const [index, event] of events.entries()) {
    if (seen.has(event.seq))
      add("duplicate", `seq ${event.seq} (${event.type}) again at ${where(index)}, after seq ${previous}.`)
    else if (event.seq < previous)
      add("out_of_order", `seq ${event.seq} (${event.type}) at ${where(index)} after seq ${previous}.`)
    else if (event.seq !== previous + 1)
      add("gap", `seq ${event.seq} (${event.type}) at ${where(index)} follows seq ${previous}.`)
    seen.add(event.seq)
    previous = Math.max(previous, event.seq)
    if (isTerminalType(event.type)) {
      terminals++
      if (terminals === 2)
        add("several_terminals", `a second terminal event, ${event.type} seq ${event.seq}.`)
      if (index !== events.length - 1)
        add(
          "terminal_not_last",
          `terminal event ${event.type} seq ${event.seq} is followed by ${events.length - 1 - index} event(s).`
        )
    }
  }
  if (complete && terminals === 0)
    add("no_terminal", `no terminal event among ${events.length} event(s) (last seq ${previous}).`)
  return violations
}

/** The invariants of one client's stream, and its agreement with the run's log when given. */
export const checkStream = (stream: StreamHistory, log?: ReadonlyArray<ObservedEvent>): Violation[] => {
  const at = { runId: stream.runId, client: stream.client }
  const flat: ObservedEvent[] = []
  const places: string[] = []
  for (const [c, connection] of stream.connections.entries())
    for (const [i, event] of connection.events.entries()) {
      flat.push(event)
      places.push(
        `connection ${c + 1} (${connection.instance}, Last-Event-ID ${connection.lastEventId}) #${i + 1}`
      )
    }
  const violations = checkSequence(flat, true, at, (index) => places[index] ?? "?")
  if (!stream.complete && stream.failure !== null)
    violations.push({ kind: "no_terminal", ...at, message: `the client ${stream.failure}.` })
  if (log !== undefined)
    for (const [index, event] of flat.entries()) {
      const logged = log[event.seq - 1]
      if (logged === undefined || !isDeepStrictEqual(logged, event))
        violations.push({
          kind: "differs_from_log",
          ...at,
          message: `${places[index]}: saw ${show(event)}, the log has ${show(logged ?? null)}.`
        })
    }
  return violations
}

const toRow = (runId: string, event: ObservedEvent): EventRow => ({
  run_id: runId,
  seq: event.seq,
  type: event.type,
  timestamp: Date.parse(event.timestamp),
  payload: event.payload as EventRow["payload"]
})

/** The public run the log folds to, seeded with the identity fields of `run`. */
export const foldLog = (run: Readonly<Record<string, unknown>>, log: ReadonlyArray<ObservedEvent>): Run => {
  const runId = String(run.id)
  const initial = RunState.initialRecord(
    {
      id: runId,
      customerId: "default",
      handler: String(run.handler),
      input: run.input as JsonValue,
      metadata: {},
      limits: run.limits as Limits
    },
    Date.parse(String(run.created_at))
  )
  return toPublicRun(
    RunState.fold(
      initial,
      log.map((e) => toRow(runId, e))
    )
  )
}

/** The invariants of a finished run: its log, and GET equal to the fold of the log. */
export const checkRun = (snapshot: RunSnapshot): Violation[] => {
  const runId = String(snapshot.run.id)
  const at = { runId, client: null }
  const violations = checkSequence(snapshot.log, true, at, (index) => `log #${index + 1}`)
  const status = String(snapshot.run.status)
  if (!["succeeded", "failed", "cancelled", "limit_exceeded"].includes(status))
    violations.push({ kind: "not_terminal", ...at, message: `GET says status ${status}.` })
  const folded = foldLog(snapshot.run, snapshot.log) as unknown as Readonly<Record<string, unknown>>
  for (const field of [...IDENTITY_FIELDS, ...FOLD_FIELDS])
    if (!isDeepStrictEqual(folded[field], snapshot.run[field]))
      violations.push({
        kind: "fold_mismatch",
        ...at,
        message: `${field}: GET says ${show(snapshot.run[field])}, the fold of the log ${show(folded[field])}.`
      })
  return violations
}

/** Every stream and every run checked; streams of runs without a snapshot are violations too. */
export const checkHistories = (
  streams: ReadonlyArray<StreamHistory>,
  snapshots: ReadonlyMap<string, RunSnapshot>
): Violation[] => {
  const violations: Violation[] = []
  for (const snapshot of snapshots.values()) violations.push(...checkRun(snapshot))
  for (const stream of streams) {
    const snapshot = snapshots.get(stream.runId)
    if (snapshot === undefined)
      violations.push({
        kind: "unknown_run",
        runId: stream.runId,
        client: stream.client,
        message: "no snapshot of this run was taken."
      })
    violations.push(...checkStream(stream, snapshot?.log))
  }
  return violations
}

/** The violations as lines for an assertion message. */
export const describeViolations = (violations: ReadonlyArray<Violation>, max = 30): string =>
  violations
    .slice(0, max)
    .map((v) => `[${v.kind}] ${v.runId}${v.client === null ? "" : ` (${v.client})`}: ${v.message}`)
    .concat(violations.length > max ? [`… and ${violations.length - max} more`] : [])
    .join("\n")
