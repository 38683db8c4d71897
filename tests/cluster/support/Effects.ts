/**
 * Step executions counted outside the engine: the effects file the handlers
 * append to (support/Handlers.ts) checked against each run's log.
 *
 * For every step of every run:
 * - each (step, attempt) entered at most once: one attempt, one execution;
 * - every execution has its `step.started` of that attempt in the log
 *   (nothing runs that the log does not know of);
 * - a step that finished (`step.done` `succeeded` at attempt k) was entered
 *   at attempts within 1..k only, including k, and returned at k: once a
 *   step is recorded as done, its function never runs again — not after a
 *   SIGKILL, a SIGTERM, a storage outage or a signal's resume.
 *
 * An attempt cut short (a worker killed mid-step) is allowed to leave an
 * `enter` without a `return`: the docs promise steps at least once, and the
 * next attempt runs it again.
 */
import type { EffectLine } from "./Handlers.js"
import type { RunSnapshot } from "./History.js"

interface StepRecord {
  /** Attempts the log started. */
  readonly started: Set<number>
  /** The attempt that succeeded, if any: the latest attempt started before a succeeded step.done. */
  succeededAt: number | null
}

const stepsOfLog = (snapshot: RunSnapshot): Map<string, StepRecord> => {
  const steps = new Map<string, StepRecord>()
  const latest = new Map<string, number>()
  for (const event of snapshot.log) {
    const value = event.payload.value as { step_id?: string; attempt?: number; outcome?: string }
    if (typeof value.step_id !== "string") continue
    const step = steps.get(value.step_id) ?? { started: new Set<number>(), succeededAt: null }
    steps.set(value.step_id, step)
    if (event.type === "step.started" && typeof value.attempt === "number") {
      step.started.add(value.attempt)
      latest.set(value.step_id, value.attempt)
    }
    if (event.type === "step.done" && value.outcome === "succeeded")
      step.succeededAt = latest.get(value.step_id) ?? null
  }
  return steps
}

export interface EffectsSummary {
  /** Step executions entered, over all the runs checked. */
  readonly executions: number
  /** Executions of an attempt after the first (a step re-run after its worker died or stopped). */
  readonly reruns: number
  readonly problems: ReadonlyArray<string>
}

export const checkEffects = (
  effects: ReadonlyArray<EffectLine>,
  snapshots: ReadonlyMap<string, RunSnapshot>
): EffectsSummary => {
  const problems: string[] = []
  let executions = 0
  let reruns = 0
  const byRun = new Map<string, EffectLine[]>()
  for (const line of effects) byRun.set(line.run, [...(byRun.get(line.run) ?? []), line])
  for (const [runId, snapshot] of snapshots) {
    const steps = stepsOfLog(snapshot)
    const lines = byRun.get(runId) ?? []
    const entered = new Map<string, EffectLine[]>()
    for (const line of lines)
      if (line.phase === "enter") entered.set(line.step, [...(entered.get(line.step) ?? []), line])
    for (const [stepId, enters] of entered) {
      executions += enters.length
      const step = steps.get(stepId)
      const attempts = enters.map((e) => e.attempt)
      const where = `${runId} step ${stepId}`
      if (new Set(attempts).size !== attempts.length)
        problems.push(`${where}: an attempt was executed twice (attempts entered: ${attempts.join(", ")}).`)
      for (const e of enters) {
        if (e.attempt > 1) reruns++
        if (step === undefined || !step.started.has(e.attempt))
          problems.push(
            `${where}: attempt ${e.attempt} ran (pid ${e.pid}) with no step.started of it in the log.`
          )
        if (step?.succeededAt != null && e.attempt > step.succeededAt)
          problems.push(
            `${where}: ran again (attempt ${e.attempt}, pid ${e.pid}) after it finished at attempt ${step.succeededAt}.`
          )
      }
    }
    for (const [stepId, step] of steps) {
      if (step.succeededAt === null) continue
      const where = `${runId} step ${stepId}`
      const enters = entered.get(stepId) ?? []
      if (!enters.some((e) => e.attempt === step.succeededAt))
        problems.push(`${where}: succeeded at attempt ${step.succeededAt}, which left no trace of running.`)
      if (!lines.some((l) => l.step === stepId && l.phase === "return" && l.attempt === step.succeededAt))
        problems.push(`${where}: succeeded at attempt ${step.succeededAt}, which never returned.`)
    }
  }
  return { executions, reruns, problems }
}
