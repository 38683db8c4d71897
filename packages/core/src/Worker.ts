/**
 * The worker: claims runs of its handlers under a lease, executes several at
 * once, keeps each lease alive by heartbeat, fires due timers, and on stop
 * lets in-flight work finish up to a deadline before letting go of leases.
 */

import { randomBytes } from "node:crypto"
import { hostname } from "node:os"
import { Effect, Fiber, Runtime, Schedule } from "effect"
import * as Engine from "./Engine.js"
import type { EngineConfig } from "./EngineConfig.js"
import { type ErrorDetail, type ValidationError, validationError } from "./Errors.js"
import { Execution, type ExecutionSettings, type RetryPolicy } from "./internal/Execution.js"
import { EMPTY_REPLAY, isFreshClaim, type Replay, replayOf } from "./internal/Replay.js"
import type { EventFeed } from "./ports/EventFeed.js"
import type { KeyStore } from "./ports/KeyStore.js"
import { RunStore } from "./ports/RunStore.js"
import type { RunRecord } from "./Run.js"
import type { AnyHandler, Handler } from "./RunContext.js"
import type { EventRow } from "./RunEvent.js"

export interface WorkerOptions {
  readonly handlers: Readonly<Record<string, AnyHandler>>
  /** Names this worker in `run.started`; default `<host>-<pid>-<random>`. */
  readonly workerId?: string
  /** Runs executed at once (default 10). */
  readonly concurrency?: number
  readonly leaseMs?: number
  /** How often a lease is renewed, and so how soon a cancel is noticed (default leaseMs / 3). */
  readonly heartbeatMs?: number
  /** Idle wait between claims when nothing was claimable (default 100 ms). */
  readonly pollIntervalMs?: number
  /** How often this worker fires due timers: input timeouts, deadlines, expired leases (default 1 s). */
  readonly sweepIntervalMs?: number
  /** How long a cancelled handler that ignores its AbortSignal is waited on (default 5 s). */
  readonly cancelGraceMs?: number
  /** Content deltas are coalesced for this long into one append (default 25 ms). */
  readonly progressFlushMs?: number
  readonly retry?: Partial<RetryPolicy>
}

export interface StopOptions {
  /** How long in-flight runs may go on before they are stopped (default 10 s). */
  readonly graceMs?: number
  /**
   * Expire the leases of stopped runs at once so other workers resume them now
   * (default true). False leaves them to expire, as a crash would.
   */
  readonly releaseLeases?: boolean
}

export interface WorkerHandle {
  readonly workerId: string
  /** Stops claiming, drains, then stops what is left (see StopOptions). */
  readonly stop: (options?: StopOptions) => Promise<void>
  /** Runs executing now, by id. */
  readonly active: () => ReadonlyArray<string>
  /** Claims now instead of at the next poll (a run was just created or resumed in this process). */
  readonly nudge: () => void
}

const CLAIM_FAILED = -1
/** Claims a worker runs at once; each takes all the slots free when it starts. */
const MAX_CLAIMS_IN_FLIGHT = 2
/** The longest pause between claims while the store keeps failing them. */
const MAX_CLAIM_BACKOFF_MS = 5000

export const DEFAULT_RETRY: RetryPolicy = {
  initialDelayMs: 1000,
  maxDelayMs: 60_000,
  factor: 2,
  jitter: 0.2,
  releaseAboveMs: 10_000
}

const NUMERIC_OPTIONS = [
  "concurrency",
  "leaseMs",
  "heartbeatMs",
  "pollIntervalMs",
  "sweepIntervalMs",
  "cancelGraceMs",
  "progressFlushMs"
] as const

const checkOptions = (options: WorkerOptions): ReadonlyArray<ErrorDetail> => {
  const problems: ErrorDetail[] = []
  if (typeof options !== "object" || options === null) return [{ path: "options", message: "is an object" }]
  if (typeof options.handlers !== "object" || options.handlers === null)
    problems.push({ path: "handlers", message: "is an object of handler functions" })
  else
    for (const [name, fn] of Object.entries(options.handlers)) {
      if (typeof fn !== "function") problems.push({ path: `handlers.${name}`, message: "is a function" })
      if (!Engine.HANDLER_NAME_PATTERN.test(name))
        problems.push({
          path: `handlers.${name}`,
          message: `is not a handler name (${Engine.HANDLER_NAME_PATTERN.source})`
        })
    }
  for (const key of NUMERIC_OPTIONS) {
    const v = options[key]
    // Bounds of a claim (Engine.ClaimOptions): a worker must never be unable to claim.
    const max = key === "concurrency" ? 1000 : key === "leaseMs" ? 24 * 3600 * 1000 : 2 ** 31 - 1
    if (v !== undefined && !(typeof v === "number" && Number.isFinite(v) && v >= 1 && v <= max))
      problems.push({ path: key, message: `is a number from 1 to ${max}` })
  }
  for (const [key, v] of Object.entries(options.retry ?? {}))
    if (!(typeof v === "number" && Number.isFinite(v) && v >= 0))
      problems.push({ path: `retry.${key}`, message: "is a non-negative number" })
  if (
    options.workerId !== undefined &&
    !(typeof options.workerId === "string" && /^[\x21-\x7e]{1,200}$/.test(options.workerId))
  )
    problems.push({ path: "workerId", message: "is 1 to 200 printable ASCII characters" })
  return problems
}

type Services = RunStore | EventFeed | KeyStore | EngineConfig

const LOG_PAGE = 1000

const readLog = (runId: string) =>
  Effect.gen(function* () {
    const store = yield* RunStore
    const log: EventRow[] = []
    for (;;) {
      const page = yield* store.readEvents(runId, log.length, LOG_PAGE)
      log.push(...page)
      if (page.length < LOG_PAGE) return log
    }
  })

/** Starts a worker on the current runtime's ports; it runs until `stop()`. */
export const startWorker = (options: WorkerOptions): Effect.Effect<WorkerHandle, ValidationError, Services> =>
  Effect.gen(function* () {
    const problems = checkOptions(options)
    if (problems.length > 0) return yield* Effect.fail(validationError(problems))
    const runtime = yield* Effect.runtime<Services>()
    const workerId = options.workerId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`
    const handlers = options.handlers
    const names = Object.keys(handlers)
    const concurrency = Math.max(1, Math.floor(options.concurrency ?? 10))
    const leaseMs = Math.max(1, Math.floor(options.leaseMs ?? 30_000))
    const settings: ExecutionSettings = {
      leaseMs,
      heartbeatMs: options.heartbeatMs ?? Math.max(1, Math.floor(leaseMs / 3)),
      cancelGraceMs: options.cancelGraceMs ?? 5000,
      progressFlushMs: options.progressFlushMs ?? 25,
      retry: { ...DEFAULT_RETRY, ...options.retry }
    }
    const pollIntervalMs = options.pollIntervalMs ?? 100
    const sweepIntervalMs = options.sweepIntervalMs ?? 1000
    // A set, not a map by run id: a run this worker lost (lease expired) and
    // claimed again has two executions until the first one notices.
    const executions = new Set<Execution>()
    let stopping = false
    const unlaunched: RecordWithLease[] = []
    // Set by a wake that came while the loop was not idle: its next idle returns at once.
    let wakePending = false
    const parked = () => {
      wakePending = true
    }
    // Ends the claim loop's idle wait early (a slot freed, a claim finished, the worker stops).
    let wake: () => void = parked
    // Counts nudges: a claim that found nothing does not hold off the next one when a nudge came
    // while it ran (the new run may have been created after its SELECT).
    let nudges = 0
    // No claim starts before this time (the poll after an empty claim, back-off after failures)
    // unless a nudge clears it.
    let holdUntil = 0
    const nudge = () => {
      nudges++
      holdUntil = 0
      wake()
    }
    // Claims in flight and the slots they may fill: a slot that frees mid-claim is claimed for at
    // once by another claim instead of waiting for the whole cycle.
    let claiming = 0
    let reserved = 0
    let failures = 0

    const launch = (run: RecordWithLease, replay: Replay) => {
      const handler = handlers[run.handler] as Handler | undefined
      if (handler === undefined) return
      const execution = new Execution(run, replay, handler, runtime, settings)
      executions.add(execution)
      void execution.start().finally(() => {
        executions.delete(execution)
        nudge()
      })
    }

    const claimFor = (free: number) =>
      Effect.gen(function* () {
        const claimed = yield* Engine.claimRuns(workerId, { leaseMs, max: free, handlers: names })
        for (const [i, run] of claimed.entries()) {
          if (stopping) {
            // Claimed as the worker began to stop: handed back by stop(), not run.
            unlaunched.push(...(claimed.slice(i) as ReadonlyArray<RecordWithLease>))
            return claimed.length
          }
          // A first attempt's log is known from the claim: one read per run saved.
          const replay = isFreshClaim(run) ? EMPTY_REPLAY : replayOf(yield* readLog(run.id))
          launch(run as RecordWithLease, replay)
        }
        return claimed.length
      }).pipe(Effect.catchAll(() => Effect.succeed(CLAIM_FAILED)))

    /** One claim for `free` slots, run beside the loop; when it ends it sets when the next may start. */
    const claimInBackground = (free: number) => {
      const nudgesBefore = nudges
      claiming++
      reserved += free
      return claimFor(free).pipe(
        Effect.tap((claimed) =>
          Effect.sync(() => {
            claiming--
            reserved -= free
            if (claimed === CLAIM_FAILED) {
              // A store that is away is asked less and less often, not every poll.
              failures++
              holdUntil = Date.now() + Math.min(MAX_CLAIM_BACKOFF_MS, pollIntervalMs * 2 ** failures)
            } else {
              failures = 0
              if (claimed === 0 && nudges === nudgesBefore) holdUntil = Date.now() + pollIntervalMs
            }
            wake()
          })
        ),
        Effect.fork
      )
    }

    const idleFor = (ms: number) =>
      Effect.async<void>((resume) => {
        if (wakePending) {
          wakePending = false
          resume(Effect.void)
          return
        }
        const end = () => {
          clearTimeout(timer)
          wake = parked
          resume(Effect.void)
        }
        const timer = setTimeout(end, ms)
        wake = end
        return Effect.sync(() => {
          clearTimeout(timer)
          wake = parked
        })
      })

    const claimLoop = Effect.gen(function* () {
      const inFlight = new Set<Fiber.RuntimeFiber<number>>()
      while (!stopping) {
        const free = concurrency - executions.size - reserved
        const wait = holdUntil - Date.now()
        if (free > 0 && claiming < MAX_CLAIMS_IN_FLIGHT && wait <= 0) {
          const fiber = yield* claimInBackground(free)
          inFlight.add(fiber)
          fiber.addObserver(() => inFlight.delete(fiber))
          continue
        }
        yield* idleFor(free > 0 && claiming < MAX_CLAIMS_IN_FLIGHT ? wait : pollIntervalMs)
      }
      // Claims still running end their round (they see `stopping`): no claimed run is dropped.
      yield* Fiber.joinAll([...inFlight])
    })
    const sweepLoop = Engine.sweep(100).pipe(
      Effect.catchAll(() => Effect.succeed(0)),
      Effect.repeat(Schedule.spaced(`${sweepIntervalMs} millis`)),
      Effect.asVoid
    )
    const loops = [Runtime.runFork(runtime)(claimLoop), Runtime.runFork(runtime)(sweepLoop)]

    let stopped: Promise<void> | null = null
    const stop = (stopOptions: StopOptions = {}): Promise<void> => {
      // A second stop waits for the first one instead of returning early.
      stopped ??= drainAndStop(stopOptions)
      return stopped
    }
    const drainAndStop = async (stopOptions: StopOptions): Promise<void> => {
      stopping = true
      wake()
      // The claim loop is let finish its round (it sees `stopping`), so no claimed run is dropped
      // mid-launch; the sweep loop holds nothing and is interrupted.
      const [claims, sweeps] = loops
      await Runtime.runPromise(runtime)(Fiber.interrupt(sweeps!))
      await Runtime.runPromise(runtime)(Fiber.join(claims!))
      const graceMs = stopOptions.graceMs ?? 10_000
      const inFlight = [...executions]
      if (graceMs > 0 && inFlight.length > 0) {
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          Promise.all(inFlight.map((e) => e.done)),
          new Promise((resolve) => {
            timer = setTimeout(resolve, graceMs)
          })
        ])
        // Not left running: it would keep the process alive for the rest of the grace period.
        clearTimeout(timer)
      }
      const left = [...executions].filter((e) => !e.finished)
      for (const execution of left) execution.stop()
      if (stopOptions.releaseLeases !== false)
        await Promise.all([
          ...left.map((e) => release(e.runId, e.leaseTokenOf())),
          ...unlaunched.map((r) => release(r.id, r.lease_token))
        ])
    }
    /** Ends a lease now: the next claim, anywhere, resumes the run. */
    const release = (runId: string, leaseToken: string) =>
      Runtime.runPromise(runtime)(
        Engine.renewLease(runId, leaseToken, 0).pipe(Effect.catchAll(() => Effect.void))
      )

    return { workerId, stop, active: () => [...executions].map((e) => e.runId), nudge }
  })

type RecordWithLease = RunRecord & { readonly lease_token: string }
