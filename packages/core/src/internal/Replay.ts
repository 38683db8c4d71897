import type { JsonValue } from "../Json.js"
import type { RunRecord } from "../Run.js"
import type { InputDecision } from "../RunContext.js"
import type { EventRow, EventValue } from "../RunEvent.js"

/** What a run's log says about its past executions, as a handler replay needs it. */
export interface Replay {
  /** Outputs of steps that finished (`undefined` when the step returned nothing). */
  readonly completed: ReadonlyMap<string, { readonly output: JsonValue | undefined }>
  /** The highest attempt started per step id. */
  readonly attempts: ReadonlyMap<string, number>
  /** Step ids in the order their first attempt started: the path a replay must retrace. */
  readonly stepOrder: ReadonlyArray<string>
  /** Each wait in order: the decision that answered it, or null while unanswered. */
  readonly waits: ReadonlyArray<InputDecision | null>
  /** Run-level (step_id null) progress reports and usage reports already written. */
  readonly runProgress: number
  readonly runUsage: number
}

/**
 * Whether a claimed run's log can hold nothing a replay uses, so it need not
 * be read: seq 1 is the `run.queued` that created the run and seq 2 the
 * `run.started` of this claim (a first attempt). A run claimed again (crash,
 * signal, released retry) has more and is replayed from its log.
 */
export const isFreshClaim = (run: RunRecord): boolean => run.last_seq <= 2

export const replayOf = (log: ReadonlyArray<EventRow>): Replay => {
  const completed = new Map<string, { output: JsonValue | undefined }>()
  const attempts = new Map<string, number>()
  const stepOrder: string[] = []
  const waits: Array<InputDecision | null> = []
  let runProgress = 0
  let runUsage = 0
  for (const e of log) {
    switch (e.type) {
      case "step.started": {
        const v = e.payload.value as EventValue<"step.started">
        if (!attempts.has(v.step_id)) stepOrder.push(v.step_id)
        attempts.set(v.step_id, Math.max(attempts.get(v.step_id) ?? 0, v.attempt))
        break
      }
      case "step.done": {
        const v = e.payload.value as EventValue<"step.done">
        if (v.outcome === "succeeded") completed.set(v.step_id, { output: v.output })
        break
      }
      case "step.progress": {
        const v = e.payload.value as EventValue<"step.progress">
        if (v.step_id === null) {
          if (v.kind === "usage") runUsage++
          else runProgress++
        }
        break
      }
      case "run.awaiting_input":
        waits.push(null)
        break
      case "run.signal_received":
        if (waits.length > 0 && waits[waits.length - 1] === null) {
          // The handler gets the decision, not the client's idempotency key.
          const { idempotency_key: _key, ...decision } = e.payload.value as EventValue<"run.signal_received">
          waits[waits.length - 1] = decision
        }
        break
    }
  }
  return { completed, attempts, stepOrder, waits, runProgress, runUsage }
}

/** The replay of a log with no steps, progress, usage or waits in it. */
export const EMPTY_REPLAY: Replay = replayOf([])
