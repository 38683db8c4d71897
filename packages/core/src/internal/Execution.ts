/**
 * One execution of one claimed run: the handler called with a RunContext
 * whose every write goes, in order, through RunState under this worker's
 * lease. A write that finds the run no longer ours (lease lost, cancelled,
 * limit hit, suspended) ends the execution: the handler is abandoned on a
 * promise that never settles, so no handler code can write afterwards.
 */
import { AsyncLocalStorage } from "node:async_hooks"
import { Cause, Clock, Effect, Either, Exit, Option, Runtime } from "effect"
import * as Engine from "../Engine.js"
import type { EngineConfig } from "../EngineConfig.js"
import { type RunNotFound, type StorageError, TransitionRejected, validationError } from "../Errors.js"
import { isJsonValue, type JsonObject } from "../Json.js"
import type { RunStore } from "../ports/RunStore.js"
import type { RunRecord } from "../Run.js"
import {
  type AwaitInputOptions,
  type EffectRunContext,
  FatalError,
  type Handler,
  type InputDecision,
  type ProgressInput,
  type RunContext,
  type StepContext,
  type UsageReport
} from "../RunContext.js"
import type { EventRow, EventValue } from "../RunEvent.js"
import { type ProgressItem, RunCommand } from "../RunState.js"
import { checkInputSchema } from "../Signal.js"
import type { Replay } from "./Replay.js"

export interface RetryPolicy {
  readonly initialDelayMs: number
  readonly maxDelayMs: number
  readonly factor: number
  /** ± this fraction of each delay, at random. */
  readonly jitter: number
  /** A backoff longer than this lets go of the run (requeued with available_at) instead of sleeping. */
  readonly releaseAboveMs: number
}

export interface ExecutionSettings {
  readonly leaseMs: number
  readonly heartbeatMs: number
  readonly cancelGraceMs: number
  readonly progressFlushMs: number
  readonly retry: RetryPolicy
}

export type ExecutionOutcome =
  /** The run ended (terminal), by this execution or by someone else. */
  | "ended"
  /** The run waits for input or a retry timer; no worker holds it. */
  | "suspended"
  /** Another claim took the run, or the lease could not be kept. */
  | "lost"
  /** The worker stopped this execution (shutdown). */
  | "stopped"

type Services = RunStore | EngineConfig

/** What a write expects the run to be after it. */
type Expect = "running" | "suspend" | "end"

/**
 * A promise that never settles, new each time: an abandoned handler awaiting it
 * is referenced by nothing and collected. (One shared promise would keep every
 * abandoned handler's continuation alive forever.)
 */
const never = <A>(): Promise<A> => new Promise<A>(() => {})
const PROGRESS_BATCH = 100
const STORAGE_RETRIES = 6

/** The step whose function is running in the current async context, per execution. */
const activeStep = new AsyncLocalStorage<{ readonly execution: Execution; readonly stepId: string }>()

const describeError = (error: unknown): { message: string; name?: string } => {
  if (error instanceof Error)
    return {
      message: error.message.slice(0, 4000) || error.name,
      ...(error.name ? { name: error.name } : {})
    }
  return { message: String(error).slice(0, 4000) }
}

export class Execution {
  readonly runId: string
  private current: RunRecord
  private readonly leaseToken: string
  private readonly controller = new AbortController()
  private state: "running" | "cancelling" | "finished" = "running"
  private outcome!: (outcome: ExecutionOutcome) => void
  readonly done: Promise<ExecutionOutcome>
  private chain: Promise<unknown> = Promise.resolve()
  private pending: ProgressItem[] = []
  /** Writes held back to go out with the next one: succeeded steps' ends and the progress before them. */
  private deferred: RunCommand[] = []
  private flushTimer: NodeJS.Timeout | null = null
  private heartbeatTimer: NodeJS.Timeout | null = null
  private deadlineTimer: NodeJS.Timeout | null = null
  private graceTimer: NodeJS.Timeout | null = null
  private readonly stepCounts = new Map<string, number>()
  /** Distinct steps this execution has called, in order (compared with the log's order). */
  private stepsCalled = 0
  /** Steps of this execution between their start and their end: progress may name only these. */
  private readonly openSteps = new Set<string>()
  /** The handler returned: its own result ends the run, nothing of it is left to abort. */
  private handlerReturned = false
  private waitIndex = 0
  private runProgressIndex = 0
  private runUsageIndex = 0

  constructor(
    run: RunRecord,
    private readonly replay: Replay,
    private readonly handler: Handler,
    private readonly runtime: Runtime.Runtime<Services>,
    private readonly settings: ExecutionSettings
  ) {
    this.runId = run.id
    this.current = run
    this.leaseToken = run.lease_token!
    this.done = new Promise((resolve) => {
      this.outcome = resolve
    })
  }

  leaseTokenOf(): string {
    return this.leaseToken
  }

  /** A method, not a field read: TypeScript would narrow `state` across the awaits before it. */
  private isCancelling(): boolean {
    return this.state === "cancelling"
  }

  get finished(): boolean {
    return this.state === "finished"
  }

  /** Starts the handler; `done` resolves when the execution is over, whatever the handler does. */
  start(): Promise<ExecutionOutcome> {
    this.heartbeatTimer = setInterval(() => this.detach(this.heartbeat()), this.settings.heartbeatMs)
    this.armDeadline()
    this.detach(this.runHandler())
    return this.done
  }

  /** Ends the execution from outside (worker shutdown): nothing more is written. */
  stop(): void {
    this.finish("stopped")
  }

  // -------------------------------------------------------------------------
  // the handler

  private async runHandler(): Promise<void> {
    let result: unknown
    try {
      const returned = this.handler(this.context())
      result = Effect.isEffect(returned)
        ? await runEffect(returned as Effect.Effect<unknown, unknown>, this.controller.signal)
        : await returned
    } catch (error) {
      if (this.finished) return
      if (this.state === "cancelling")
        await this.write(RunCommand.Cancel({ leaseToken: this.leaseToken }), "end")
      else
        await this.write(
          RunCommand.Fail({
            leaseToken: this.leaseToken,
            reasonCode: "HANDLER_ERROR",
            message: describeError(error).message
          }),
          "end"
        )
      return
    }
    if (this.finished) return
    this.handlerReturned = true
    const output = result === undefined ? null : result
    if (!isJsonValue(output)) {
      await this.write(
        RunCommand.Fail({
          leaseToken: this.leaseToken,
          reasonCode: "HANDLER_ERROR",
          message: "The handler returned a value that is not JSON."
        }),
        "end"
      )
      return
    }
    await this.write(RunCommand.Succeed({ leaseToken: this.leaseToken, output }), "end")
  }

  private context(): RunContext {
    const run = this.current
    const ctx: RunContext = {
      runId: run.id,
      handler: run.handler,
      input: run.input,
      metadata: run.metadata,
      attempt: run.usage.attempts,
      signal: this.controller.signal,
      step: (name, fn) => this.step(name, fn),
      progress: (report) => this.progress(report),
      awaitInput: (options) => this.awaitInput(options),
      reportUsage: (usage) => this.reportUsage(usage),
      effect: this.effectContext()
    }
    return ctx
  }

  private effectContext(): EffectRunContext {
    return {
      step: (name, body) =>
        Effect.promise(() =>
          this.step(name, (s) => runEffect(typeof body === "function" ? body(s) : body, s.signal))
        ) as never,
      awaitInput: (options) => Effect.promise(() => this.awaitInput(options)),
      reportUsage: (usage) => Effect.promise(() => this.reportUsage(usage)),
      progress: (report) => Effect.sync(() => this.progress(report))
    }
  }

  // -------------------------------------------------------------------------
  // durable operations

  private async step<T>(name: string, fn: (step: StepContext) => T | Promise<T>): Promise<T> {
    if (typeof name !== "string" || name.length === 0 || name.length > 200)
      throw validationError([{ path: "name", message: "a step name is 1 to 200 characters" }])
    if (this.finished) return never()
    const occurrence = this.stepCounts.get(name) ?? 0
    this.stepCounts.set(name, occurrence + 1)
    const stepId = `${name}:${occurrence}`
    // Replay must retrace the logged path: a different step where the log has one is non-determinism.
    const expected = this.replay.stepOrder[this.stepsCalled++]
    if (expected !== undefined && expected !== stepId) {
      await this.write(
        RunCommand.Fail({
          leaseToken: this.leaseToken,
          reasonCode: "HANDLER_ERROR",
          message: `Non-determinism: the handler called step ${stepId} where the run's log has step ${expected}.`
        }),
        "end"
      )
      return never()
    }
    const recorded = this.replay.completed.get(stepId)
    if (recorded !== undefined) return structuredClone(recorded.output) as T
    let attempt = (this.replay.attempts.get(stepId) ?? 0) + 1
    if (attempt > this.current.limits.max_step_attempts) {
      // Every attempt died with its worker (a poison step): no attempt is left to try.
      await this.write(
        RunCommand.Fail({
          leaseToken: this.leaseToken,
          reasonCode: "STEP_RETRIES_EXHAUSTED",
          message: `Step ${name} was interrupted on each of its ${attempt - 1} attempts.`
        }),
        "end"
      )
      return never()
    }
    for (;;) {
      const started = await this.write(
        RunCommand.StartStep({ leaseToken: this.leaseToken, stepId, name, attempt }),
        "running"
      )
      if (!started) return never()
      this.openSteps.add(stepId)
      const context: StepContext = {
        stepId,
        name,
        attempt,
        signal: this.controller.signal,
        progress: (report) => this.progress(report, stepId)
      }
      let output: unknown
      try {
        output = await activeStep.run({ execution: this, stepId }, () => fn(context))
      } catch (error) {
        this.openSteps.delete(stepId)
        if (this.finished) return never()
        // A cancelled handler's step error is the cancel itself: let it reach the handler.
        if (this.state === "cancelling") throw error
        const stepError = describeError(error)
        if (error instanceof FatalError) {
          await this.write(
            RunCommand.FinishStep({
              leaseToken: this.leaseToken,
              stepId,
              outcome: "fail_run",
              error: stepError
            }),
            "end"
          )
          return never()
        }
        const delay = this.backoff(attempt)
        const exhausted = attempt >= this.current.limits.max_step_attempts
        const release = !exhausted && delay > this.settings.retry.releaseAboveMs
        const ok = await this.write(
          RunCommand.FinishStep({
            leaseToken: this.leaseToken,
            stepId,
            outcome: "retry_step",
            error: stepError,
            retryInMs: delay,
            ...(release ? { requeue: true } : {})
          }),
          exhausted ? "end" : release ? "suspend" : "running"
        )
        if (!ok) return never()
        if (!(await this.sleep(delay))) {
          // Cancelled while backing off: the handler sees the cancel as this step's error.
          if (this.isCancelling()) throw this.controller.signal.reason
          return never()
        }
        attempt++
        continue
      }
      this.openSteps.delete(stepId)
      if (this.finished) return never()
      if (output !== undefined && !isJsonValue(output)) {
        await this.write(
          RunCommand.FinishStep({
            leaseToken: this.leaseToken,
            stepId,
            outcome: "fail_run",
            error: { message: `Step ${name} returned a value that is not JSON.` }
          }),
          "end"
        )
        return never()
      }
      const finish = RunCommand.FinishStep({
        leaseToken: this.leaseToken,
        stepId,
        outcome: "succeeded",
        ...(output === undefined ? {} : { output })
      })
      const deferred = this.deferStepDone(finish)
      if (deferred !== null) return deferred.output as T
      const finished = await this.write(finish, "running")
      if (!finished) return never()
      return this.recordedOutput(this.lastEvents, stepId, output) as T
    }
  }

  /**
   * Holds a succeeded step's `step.done` back to go out with the next write
   * (the next step's start, a progress flush, the run's end), or on its own
   * after the progress flush window: one append per step saved. Returns the
   * step's recorded output, or null when the step's end must be written now
   * (it ends the run: a deadline passed, a cancel was asked for).
   */
  private deferStepDone(
    command: Extract<RunCommand, { _tag: "FinishStep" }>
  ): { readonly output: unknown } | null {
    const preview = Runtime.runSync(this.runtime)(Engine.decideCommand(this.current, command))
    if (Either.isLeft(preview) || preview.right._tag !== "Transition") return null
    if (preview.right.next.status !== "running") return null
    // The step's own progress still waiting is written before its end.
    if (this.pending.length > 0)
      this.deferred.push(RunCommand.Progress({ leaseToken: this.leaseToken, items: this.pending }))
    this.pending = []
    this.deferred.push(command)
    this.armFlush()
    // A copy: the handler may change what it gets before the event is written.
    return { output: structuredClone(this.recordedOutput(preview.right.events, command.stepId, undefined)) }
  }

  /** The recorded (redacted) output in a step's `step.done`, exactly what a replay will return. */
  private recordedOutput(events: ReadonlyArray<EventRow>, stepId: string, fallback: unknown): unknown {
    const done = events.find(
      (e) => e.type === "step.done" && (e.payload.value as EventValue<"step.done">).step_id === stepId
    )
    return done === undefined ? fallback : (done.payload.value as EventValue<"step.done">).output
  }

  private progress(report: ProgressInput, stepId?: string): void {
    const item = this.progressItem(report, stepId ?? this.stepInContext())
    if (item.stepId === null && this.runProgressIndex++ < this.replay.runProgress) return
    // A report from a step that already ended (a leaked callback) has nowhere to go.
    if (this.finished || (item.stepId !== null && !this.openSteps.has(item.stepId))) return
    this.pending.push(item)
    if (this.pending.length >= PROGRESS_BATCH) this.detach(this.enqueue(() => this.flushNow()))
    else this.armFlush()
  }

  /** Writes what is held back (progress, a step's end) within the flush window. */
  private armFlush(): void {
    if (this.flushTimer === null)
      this.flushTimer = setTimeout(
        () => this.detach(this.enqueue(() => this.flushNow())),
        this.settings.progressFlushMs
      )
  }

  private progressItem(report: ProgressInput, stepId: string | null): ProgressItem {
    if (typeof report !== "object" || report === null)
      throw validationError([{ path: "progress", message: "is an object" }])
    if ("content_delta" in report && typeof report.content_delta === "string" && !("kind" in report))
      return { stepId, kind: "content_delta", fields: { content_delta: report.content_delta } }
    const { kind, ...fields } = report as { kind?: unknown }
    if (typeof kind !== "string" || kind.length === 0 || kind.length > 100 || kind === "usage")
      throw validationError([{ path: "kind", message: "is a name of 1 to 100 characters other than usage" }])
    if (!isJsonValue(fields)) throw validationError([{ path: "progress", message: "fields must be JSON" }])
    return { stepId, kind, fields: fields as JsonObject }
  }

  private stepInContext(): string | null {
    const store = activeStep.getStore()
    return store !== undefined && store.execution === this ? store.stepId : null
  }

  private async awaitInput(options: AwaitInputOptions): Promise<InputDecision> {
    if (this.finished) return never()
    const index = this.waitIndex++
    if (index < this.replay.waits.length) {
      const decision = this.replay.waits[index]
      if (decision !== null && decision !== undefined) return structuredClone(decision)
    }
    if (typeof options !== "object" || options === null || typeof options.prompt !== "string")
      throw validationError([{ path: "prompt", message: "is a string" }])
    if (options.input_schema !== undefined) {
      const problem = checkInputSchema(options.input_schema)
      if (problem !== null) throw validationError([{ path: "input_schema", message: problem }])
    }
    await this.write(
      RunCommand.AwaitInput({
        leaseToken: this.leaseToken,
        prompt: options.prompt,
        actions: options.actions,
        ...(options.input_schema === undefined ? {} : { inputSchema: options.input_schema }),
        ...(options.timeout_ms === undefined ? {} : { timeoutMs: options.timeout_ms })
      }),
      "suspend"
    )
    return never()
  }

  private async reportUsage(usage: UsageReport): Promise<void> {
    if (this.finished) return never()
    const stepId = this.stepInContext()
    if (stepId === null && this.runUsageIndex++ < this.replay.runUsage) return
    const ok = await this.write(
      RunCommand.ReportUsage({
        leaseToken: this.leaseToken,
        stepId,
        tokens: usage?.tokens ?? 0,
        costUsd: usage?.cost_usd ?? 0
      }),
      "running"
    )
    if (!ok) return never()
  }

  // -------------------------------------------------------------------------
  // writes: one at a time, progress first

  private lastEvents: ReadonlyArray<EventRow> = []

  private enqueue<A>(task: () => Promise<A>): Promise<A> {
    const next = this.chain.then(task, task)
    this.chain = next.catch(() => undefined)
    return next
  }

  /** Appends `command` after anything held back, in one write; false when the execution is over. */
  private write(command: RunCommand, expect: Expect): Promise<boolean> {
    return this.enqueue(() => {
      if (this.finished) return Promise.resolve(false)
      return this.applyNow([...this.takeHeld(), command], expect)
    })
  }

  private async flushNow(): Promise<boolean> {
    if (this.finished) return false
    const held = this.takeHeld()
    if (held.length === 0) return true
    try {
      return await this.applyNow(held, "running")
    } catch {
      // A write the state machine refuses is dropped; it must never fail the write behind it.
      return !this.finished
    }
  }

  /** Held-back steps' ends and buffered progress, in order, as commands; nothing is held after. */
  private takeHeld(): ReadonlyArray<RunCommand> {
    if (this.flushTimer !== null) {
      clearTimeout(this.flushTimer)
      this.flushTimer = null
    }
    const held = this.deferred
    this.deferred = []
    if (this.pending.length > 0) {
      held.push(RunCommand.Progress({ leaseToken: this.leaseToken, items: this.pending }))
      this.pending = []
    }
    return held
  }

  private async applyNow(commands: ReadonlyArray<RunCommand>, expect: Expect): Promise<boolean> {
    for (let attempt = 0; ; attempt++) {
      if (this.finished) return false
      const exit = await this.runPromiseExit(
        Engine.applyCommands(this.runId, commands, {
          leaseToken: this.leaseToken,
          initial: this.current,
          // Progress the state machine refuses is dropped: it never fails the write it goes with.
          skipRejected: (command) => command._tag === "Progress"
        })
      )
      if (Exit.isSuccess(exit)) {
        const { run, decision } = exit.value
        this.current = run
        this.lastEvents = decision._tag === "Transition" ? decision.events : []
        if (run.status === "running") return true
        if (expect === "suspend" && (run.status === "awaiting_input" || run.status === "queued"))
          this.finish("suspended")
        else this.finish("ended")
        return false
      }
      const error = Option.getOrNull(Cause.failureOption(exit.cause))
      if (error instanceof TransitionRejected) {
        switch (error.reason_code) {
          case "LEASE_LOST":
            this.finish("lost")
            return false
          case "RUN_NOT_RUNNING":
          case "RUN_ALREADY_TERMINAL":
            this.finish("ended")
            return false
          default:
            // The handler asked for something invalid (bad usage, non-deterministic step): tell it.
            throw error
        }
      }
      if (error !== null && error._tag === "StorageError" && attempt < STORAGE_RETRIES) {
        // The store is away: back off and try again while the lease may still hold.
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt))
        continue
      }
      // A store that stays away, or a run that vanished: let the lease expire; another worker resumes.
      this.finish("lost")
      return false
    }
  }

  private runPromiseExit<A>(
    effect: Effect.Effect<A, RunNotFound | TransitionRejected | StorageError, Services>
  ): Promise<Exit.Exit<A, RunNotFound | TransitionRejected | StorageError>> {
    return Effect.runPromiseExit(Effect.provide(effect, this.runtime.context))
  }

  // -------------------------------------------------------------------------
  // lease, deadline, cancel

  private async heartbeat(): Promise<void> {
    // A renewal still waiting on a slow store is not doubled by the next beat.
    if (this.finished || this.renewing) return
    this.renewing = true
    try {
      await this.renew()
    } finally {
      this.renewing = false
    }
  }

  private renewing = false

  private async renew(): Promise<void> {
    const exit = await this.runPromiseExit(
      Engine.renewLease(this.runId, this.leaseToken, this.settings.leaseMs)
    )
    if (this.finished || Exit.isFailure(exit)) return // a failed renewal is retried on the next beat
    const row = exit.value
    if (row === null) {
      this.finish("lost")
      return
    }
    this.current =
      row.version >= this.current.version ? row : { ...this.current, lease_expires_at: row.lease_expires_at }
    if (row.cancel_requested !== null && this.state === "running") this.beginCancel()
  }

  private beginCancel(): void {
    this.state = "cancelling"
    this.controller.abort(new Error("The run was cancelled."))
    // A handler that ignores its signal is not waited on past the grace period.
    this.graceTimer = setTimeout(
      () => this.detach(this.write(RunCommand.Cancel({ leaseToken: this.leaseToken }), "end")),
      this.settings.cancelGraceMs
    )
  }

  private armDeadline(): void {
    const deadline = this.current.deadline_at
    if (deadline === null) return
    const inMs = Math.max(0, deadline - Runtime.runSync(this.runtime)(Clock.currentTimeMillis))
    // Past the deadline a Tick ends the run LIMIT_MAX_DURATION, whatever the handler is doing.
    this.deadlineTimer = setTimeout(
      () => this.detach(this.write(RunCommand.Tick(), "end")),
      Math.min(inMs + 1, 2 ** 31 - 1)
    )
  }

  private backoff(attempt: number): number {
    const { initialDelayMs, maxDelayMs, factor, jitter } = this.settings.retry
    const base = Math.min(maxDelayMs, initialDelayMs * factor ** (attempt - 1))
    return Math.max(0, Math.round(base * (1 - jitter + Math.random() * 2 * jitter)))
  }

  /** Waits `ms` unless the execution ends first; true when it is still ours to run. */
  private sleep(ms: number): Promise<boolean> {
    if (this.controller.signal.aborted) return Promise.resolve(false)
    if (ms === 0) return Promise.resolve(!this.finished)
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.controller.signal.removeEventListener("abort", onAbort)
        resolve(!this.finished)
      }, ms)
      const onAbort = () => {
        clearTimeout(timer)
        resolve(false)
      }
      this.controller.signal.addEventListener("abort", onAbort, { once: true })
    })
  }

  /** Runs work nobody awaits; if it fails unexpectedly the execution lets go (the lease expires). */
  private detach(work: Promise<unknown>): void {
    work.catch(() => this.finish("lost"))
  }

  private finish(outcome: ExecutionOutcome): void {
    if (this.state === "finished") return
    this.state = "finished"
    for (const timer of [this.flushTimer, this.deadlineTimer, this.graceTimer])
      if (timer !== null) clearTimeout(timer)
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer)
    this.pending = []
    this.deferred = []
    // Work the handler left behind is aborted, unless the handler itself finished the run.
    if (!this.handlerReturned && !this.controller.signal.aborted)
      this.controller.abort(new Error(`The execution is over (${outcome}).`))
    this.outcome(outcome)
  }
}

/** Runs an Effect-style handler or step; its failure surfaces as the error itself (a FatalError stays one). */
const runEffect = async <A>(effect: Effect.Effect<A, unknown>, signal: AbortSignal): Promise<A> => {
  // The run's AbortSignal interrupts the Effect, as it aborts a Promise-style handler's work.
  const exit = await Effect.runPromiseExit(effect, { signal })
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}
