/**
 * What the worker cases share: starting and always stopping workers, gates a
 * step can block on, and waiting for a condition with a deadline (never for a
 * fixed time).
 */
import { Engine, type EventRow, isTerminal, type Principal, type Run, Worker } from "@baton/core"
import { type Harness, newHandler, newPrincipal } from "../Harness.js"
import { createRun, readAll } from "./helpers.js"

/** How long a wait for a condition may take before the case fails (slow stores included). */
export const WAIT_MS = 8_000

/** Short timings, so crashes, retries and timeouts resolve in well under a second. */
export const FAST: Omit<Worker.WorkerOptions, "handlers"> = {
  concurrency: 10,
  leaseMs: 1_000,
  heartbeatMs: 50,
  pollIntervalMs: 10,
  sweepIntervalMs: 50,
  cancelGraceMs: 200,
  progressFlushMs: 5,
  retry: { initialDelayMs: 5, maxDelayMs: 20, factor: 2, jitter: 0 }
}

const pause = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const show = (value: unknown): string => {
  try {
    return JSON.stringify(value)?.slice(0, 2_000) ?? String(value)
  } catch {
    return String(value)
  }
}

/**
 * Polls `probe` until `done` holds for what it returned, and returns that; fails with
 * `what` and the last value seen once `timeoutMs` passed.
 */
export const waitFor = async <T>(
  what: string,
  probe: () => T | Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = WAIT_MS
): Promise<T> => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (done(value)) return value
    if (Date.now() > deadline)
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${show(value)}`)
    await pause(5)
  }
}

export const getRun = (h: Harness, principal: Principal, runId: string): Promise<Run> =>
  h.run(Engine.getRun(principal, runId))

/** Waits until the run's status is one of `statuses` (and `also` holds for it). */
export const waitForStatus = (
  h: Harness,
  principal: Principal,
  runId: string,
  statuses: ReadonlyArray<Run["status"]>,
  also: (run: Run) => boolean = () => true
): Promise<Run> =>
  waitFor(
    `run ${runId} to be ${statuses.join(" or ")}`,
    () => getRun(h, principal, runId),
    (run) => statuses.includes(run.status) && also(run)
  )

export const waitForTerminal = async (h: Harness, principal: Principal, runId: string): Promise<Run> => {
  const run = await waitFor(
    `run ${runId} to end`,
    () => getRun(h, principal, runId),
    (r) => isTerminal(r.status)
  )
  // The ending write may carry more than the terminal event (a step's held-back step.done); a store
  // whose reads can see a commit's run row before its events (the Mongo emulator) is read until the
  // log holds the whole write, so cases assert on the log, not on that race.
  await waitFor(
    `the log of run ${runId} to hold its end`,
    () => readAll(h, runId),
    (events) => events.length >= run.last_seq
  )
  return run
}

/** Waits until the run awaits input with this prompt. */
export const waitForPrompt = (h: Harness, principal: Principal, runId: string, prompt: string) =>
  waitForStatus(h, principal, runId, ["awaiting_input"], (run) => run.awaiting_input?.prompt === prompt)

/** Waits until the log holds an event that `match` accepts; returns the whole log. */
export const waitForEvent = (
  h: Harness,
  runId: string,
  what: string,
  match: (event: EventRow) => boolean
): Promise<ReadonlyArray<EventRow>> =>
  waitFor(
    `${what} in the log of ${runId}`,
    () => readAll(h, runId),
    (events) => events.some(match)
  )

// ---------------------------------------------------------------------------
// reading logs

export type Value = Readonly<Record<string, unknown>>

export const payloadOf = (event: EventRow): Value => event.payload.value as Value

export const typesOf = (events: ReadonlyArray<EventRow>): ReadonlyArray<string> => events.map((e) => e.type)

export const ofType = (events: ReadonlyArray<EventRow>, type: string): ReadonlyArray<Value> =>
  events.filter((e) => e.type === type).map(payloadOf)

/** The values of `type` events that belong to step `stepId`. */
export const ofStep = (events: ReadonlyArray<EventRow>, type: string, stepId: string): ReadonlyArray<Value> =>
  ofType(events, type).filter((v) => v.step_id === stepId)

/** Concatenated `content_delta`s of the progress events whose `step_id` is `stepId` (null: the run's). */
export const contentOf = (events: ReadonlyArray<EventRow>, stepId: string | null): string =>
  ofType(events, "step.progress")
    .filter((v) => v.step_id === stepId && v.kind === "content_delta")
    .map((v) => String(v.content_delta))
    .join("")

// ---------------------------------------------------------------------------
// gates and workers

/** A promise the test resolves: a step blocks on it until the test opens it. */
export class Gate {
  readonly promise: Promise<void>
  private release: () => void = () => {}
  opened = false
  constructor() {
    this.promise = new Promise<void>((resolve) => {
      this.release = resolve
    })
  }
  open(): void {
    this.opened = true
    this.release()
  }
}

/** Resolves when `signal` fires (at once if it already has); rejects with its reason. */
export const untilAborted = (signal: AbortSignal): Promise<never> =>
  new Promise<never>((_, reject) => {
    const fail = () => reject(signal.reason instanceof Error ? signal.reason : new Error("aborted"))
    if (signal.aborted) fail()
    else signal.addEventListener("abort", fail, { once: true })
  })

/**
 * The workers and gates of one case. `cleanup()` (in a `finally`) opens every
 * gate and stops every worker still running, so a failing case leaks nothing.
 */
export class Scene {
  private readonly running = new Set<Worker.WorkerHandle>()
  private readonly gates: Gate[] = []
  constructor(private readonly h: Harness) {}

  gate(): Gate {
    const gate = new Gate()
    this.gates.push(gate)
    return gate
  }

  async start(options: Worker.WorkerOptions): Promise<Worker.WorkerHandle> {
    const handle = await this.h.run(
      Worker.startWorker({ ...FAST, ...options, retry: { ...FAST.retry, ...options.retry } })
    )
    this.running.add(handle)
    return handle
  }

  /** Stops a worker cleanly (in-flight runs get `graceMs`). */
  async stop(handle: Worker.WorkerHandle, options?: { graceMs?: number; releaseLeases?: boolean }) {
    this.running.delete(handle)
    await handle.stop(options)
  }

  /** A crash: nothing more is written, the leases are left to expire. */
  crash(handle: Worker.WorkerHandle): Promise<void> {
    return this.stop(handle, { graceMs: 0, releaseLeases: false })
  }

  /**
   * Stops every worker still running, letting in-flight runs finish (up to 2 s):
   * after it, no handler code of this case runs any more.
   */
  async stopWorkers(): Promise<void> {
    const handles = [...this.running]
    this.running.clear()
    await Promise.all(handles.map((handle) => handle.stop({ graceMs: 2_000 })))
  }

  async cleanup(): Promise<void> {
    for (const gate of this.gates) gate.open()
    await this.stopWorkers()
  }
}

/** What `withScene` hands a case: a fresh principal and handler name, and the case's scene. */
export interface SceneContext {
  readonly principal: Principal
  readonly handler: string
  readonly scene: Scene
  /**
   * Starts a worker running `fn` as `handler` (the scene's short timings), creates one run
   * of it (`body` as `createRun` takes it) and waits until the run has ended.
   */
  readonly runToEnd: (
    fn: Worker.WorkerOptions["handlers"][string],
    body?: Record<string, unknown>
  ) => Promise<{ readonly run: Run; readonly done: Run }>
}

/**
 * Runs one case with a fresh principal, handler name and scene, and always
 * cleans the scene up afterwards (gates opened, workers stopped), pass or fail.
 */
export const withScene = async <A>(
  h: () => Harness,
  body: (context: SceneContext) => Promise<A>
): Promise<A> => {
  const principal = newPrincipal()
  const handler = newHandler()
  const scene = new Scene(h())
  try {
    const runToEnd: SceneContext["runToEnd"] = async (fn, createBody) => {
      await scene.start({ handlers: { [handler]: fn } })
      const run = await createRun(h(), principal, handler, createBody)
      const done = await waitForTerminal(h(), principal, run.id)
      return { run, done }
    }
    return await body({ principal, handler, scene, runToEnd })
  } finally {
    await scene.cleanup()
  }
}
