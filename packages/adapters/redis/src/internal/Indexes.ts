/**
 * The shared indexes (claim queue per handler, timers) are hints, never the
 * truth: the run hash is, and every claim or sweep re-checks it. Two rules
 * keep them from ever hiding a run:
 *
 * 1. A write that may make a run due EARLIER (queued again, a lease released,
 *    a timer set) first LOWERS the run's score (`hint`), then writes the run,
 *    then sets the exact score (`settle`). A writer that dies after the hint
 *    leaves a score that is too early: it costs a read, never a run.
 * 2. Raising or removing a score (`settle`) is refused while a newer version
 *    of the run was hinted or settled, so a reconciler that read an old record
 *    cannot undo a newer writer's hint. A hint older than STALE_HINT_MS (its
 *    writer died before writing) no longer blocks. Hint times and ages are
 *    Redis's own clock (TIME inside the scripts), never an engine's.
 * 3. An entry whose run is missing is removed only when no live hint protects
 *    it, and then the run id is voided (void_run_id) before anyone may trust
 *    the removal: a creator that was merely slow finds its create_run refused
 *    instead of storing a run no index points at.
 */
import { isTerminal, type RunPatch, type RunRecord, type RunStatus, type StorageError } from "@baton/core"
import { Effect } from "effect"
import { attempt } from "./Errors.js"
import type { IndexKeys, KeyLayout } from "./Keys.js"
import type { Scripts } from "./Scripts.js"

/** No write takes this long between its hint and its run write; past it, a hint is a dead writer's. */
export const STALE_HINT_MS = 60_000

/** The fields of a run the indexes depend on. */
export interface IndexState {
  readonly status: RunStatus
  readonly handler: string
  readonly available_at: number | null
  readonly lease_expires_at: number | null
  readonly timer_at: number | null
  readonly version: number
}

/** When a worker may claim the run; null when it never can in this state. */
export const claimScore = (s: Omit<IndexState, "version" | "handler">): number | null => {
  if (s.status === "queued") return s.available_at
  if (s.status === "running") return s.lease_expires_at
  return null
}

/** When a sweep must look at the run (timer or lease); null when never. */
export const timerScore = (s: Omit<IndexState, "version" | "handler">): number | null => {
  if (isTerminal(s.status)) return null
  const lease = s.status === "running" ? s.lease_expires_at : null
  if (s.timer_at === null) return lease
  return lease === null ? s.timer_at : Math.min(s.timer_at, lease)
}

export const indexStateOf = (r: RunRecord): IndexState => ({
  status: r.status,
  handler: r.handler,
  available_at: r.available_at,
  lease_expires_at: r.lease_expires_at,
  timer_at: r.timer_at,
  version: r.version
})

/** Whether a patch can change a run's place in the indexes. */
export const touchesIndexes = (patch: RunPatch): boolean =>
  "status" in patch || "available_at" in patch || "lease_expires_at" in patch || "timer_at" in patch

const isNumber = (v: unknown): v is number => typeof v === "number"

/**
 * Lower bounds of the scores a write of `patch` may give the run, from the
 * patch alone: a field it does not name is unknown, and an unknown bound is 0
 * (due at once), which is always safe for a hint.
 */
export const hintScores = (patch: RunPatch): { claim: number | null; timer: number | null } => {
  const status = patch.status
  if (status !== undefined && isTerminal(status)) return { claim: null, timer: null }
  let claim: number | null = null
  if (status === "queued") claim = patch.available_at ?? 0
  else if (status === "running") claim = patch.lease_expires_at ?? 0
  else if (status === undefined) {
    const named = [patch.available_at, patch.lease_expires_at].filter(isNumber)
    if (named.length > 0) claim = Math.min(...named)
  }
  const timers = [patch.timer_at, patch.lease_expires_at].filter(isNumber)
  return { claim, timer: timers.length > 0 ? Math.min(...timers) : null }
}

export interface Indexes {
  /** Rule 1's first step: lowers the scores before a write that produces `version`. */
  readonly hint: (
    runId: string,
    handler: string,
    version: number,
    scores: { claim: number | null; timer: number | null }
  ) => Effect.Effect<void, StorageError>
  /** Sets both exact scores from a run state read or written at `state.version`. */
  readonly settle: (runId: string, state: IndexState) => Effect.Effect<void, StorageError>
  /**
   * Removes the run's entries (claim queue when `handler` is known, timers) unless a live
   * hint protects them; true when every removal applied.
   */
  readonly remove: (runId: string, handler: string | null) => Effect.Effect<boolean, StorageError>
}

export const makeIndexes = (keys: KeyLayout, scripts: Scripts): Indexes => {
  const hintOne = (index: IndexKeys, runId: string, version: number, score: number) =>
    attempt(() => scripts.hintIndex(index.zset, index.versions, runId, version, score))
  const settleOne = (index: IndexKeys, runId: string, version: number, score: number | null) =>
    attempt(() =>
      scripts.settleIndex(
        index.zset,
        index.versions,
        runId,
        version,
        score === null ? "" : score,
        STALE_HINT_MS
      )
    )
  return {
    hint: (runId, handler, version, scores) =>
      Effect.asVoid(
        Effect.all(
          [
            scores.claim === null
              ? Effect.void
              : hintOne(keys.claimQueue(handler), runId, version, scores.claim),
            scores.timer === null ? Effect.void : hintOne(keys.timers, runId, version, scores.timer)
          ],
          { concurrency: "unbounded" }
        )
      ),
    settle: (runId, state) =>
      Effect.asVoid(
        Effect.all(
          [
            settleOne(keys.claimQueue(state.handler), runId, state.version, claimScore(state)),
            settleOne(keys.timers, runId, state.version, timerScore(state))
          ],
          { concurrency: "unbounded" }
        )
      ),
    remove: (runId, handler) =>
      Effect.map(
        Effect.all(
          [
            handler === null ? Effect.succeed(1) : settleOne(keys.claimQueue(handler), runId, 0, null),
            settleOne(keys.timers, runId, 0, null)
          ],
          { concurrency: "unbounded" }
        ),
        (applied) => applied.every((a) => a === 1)
      )
  }
}
