/**
 * The handler API (SPEC §7): what a handler receives to do durable work.
 *
 * A handler is re-executed from the top on every (re)start of its run; the
 * worker replays the run's log so that `step()` returns the recorded output
 * of a step that already finished, `awaitInput()` returns the decision that
 * already answered that wait, and progress or usage already recorded is not
 * written again. Handlers must therefore be deterministic between steps:
 * same steps, same order, same names.
 */
import type { Effect } from "effect"
import type { JsonObject, JsonValue } from "./Json.js"
import type { Metadata } from "./Run.js"
import type { SignalAction } from "./RunEvent.js"

/** A progress report: a content delta, or a kind of the handler's own with its fields. */
export type ProgressInput =
  | { readonly content_delta: string }
  | { readonly kind: string; readonly [field: string]: JsonValue }

export interface StepContext {
  /** `name:occurrence`, e.g. `fetch:0` — stable across replays. */
  readonly stepId: string
  readonly name: string
  /** 1 on the first try, 2 on the first retry… */
  readonly attempt: number
  /** Fires when the run is cancelled, hits a limit, or this worker loses the run. */
  readonly signal: AbortSignal
  /** Reports progress of this step (`step.progress` with this step's id). */
  readonly progress: (report: ProgressInput) => void
}

export interface AwaitInputOptions {
  readonly prompt: string
  readonly actions: ReadonlyArray<SignalAction>
  /** JSON Schema the `submit_input` input must match. */
  readonly input_schema?: JsonObject
  /** Ends the run LIMIT_INPUT_TIMEOUT when no signal came in time; default `limits.input_timeout_ms`. */
  readonly timeout_ms?: number | null
}

/** How a wait was answered. */
export interface InputDecision {
  readonly action: SignalAction
  readonly input?: JsonValue
  readonly comment?: string
}

export interface UsageReport {
  readonly tokens?: number
  readonly cost_usd?: number
}

export interface RunContext<Input = JsonValue> {
  readonly runId: string
  readonly handler: string
  readonly input: Input
  readonly metadata: Metadata
  /** The run's execution attempt: 1, then + 1 on every requeue (crash, signal, released retry). */
  readonly attempt: number
  /** Fires on cancel, on a limit, or when this worker loses the run. */
  readonly signal: AbortSignal
  /**
   * Runs `fn` once per run: its (redacted) result is recorded in `step.done`,
   * and a replay returns the record without calling `fn`. A thrown error is
   * retried with backoff up to `limits.max_step_attempts`; a `FatalError`
   * fails the run at once. The output must be JSON (or undefined).
   */
  // biome-ignore lint/suspicious/noConfusingVoidType: a step or a handler may return nothing
  readonly step: <T extends JsonValue | undefined | void>(
    name: string,
    fn: (step: StepContext) => T | Promise<T>
  ) => Promise<T>
  /** Progress: of the step running in this async context, else of the run. */
  readonly progress: (report: ProgressInput) => void
  /** Suspends the run (no worker held) until a signal answers; the resumed run returns the decision. */
  readonly awaitInput: (options: AwaitInputOptions) => Promise<InputDecision>
  /** Adds to the run's usage; passing `max_tokens` / `max_cost_usd` ends the run LIMIT_BUDGET. */
  readonly reportUsage: (usage: UsageReport) => Promise<void>
  /** The same operations as Effects, for Effect-style handlers. */
  readonly effect: EffectRunContext
}

/** What a handler may return: JSON (the run's output), or nothing (output null). */
// biome-ignore lint/suspicious/noConfusingVoidType: a step or a handler may return nothing
export type HandlerResult = JsonValue | undefined | void

/** A Promise-style handler, or an Effect-style one (the returned Effect is run by the worker). */
export type Handler<Input = JsonValue> = (
  run: RunContext<Input>
) => HandlerResult | Promise<HandlerResult> | Effect.Effect<HandlerResult, unknown>

/** Thrown from a step (or a handler) to fail the run at once, without retries. */
export class FatalError extends Error {
  override readonly name: string = "FatalError"
}

/**
 * Any handler, whatever input type it declares: what handler registries hold.
 * (`never` input: a `Handler<MyInput>` is assignable to it; the worker calls it
 * with the run's stored input, which the handler's own type describes.)
 */
export type AnyHandler = Handler<never>

/** Types a handler's input: `defineHandler<{ q: string }>(async (run) => run.input.q)`. */
export const defineHandler = <Input = JsonValue>(handler: Handler<Input>): Handler<Input> => handler

/** The same API as Effects, for Effect-style handlers (`run.effect.step(...)`). */
export interface EffectRunContext {
  // biome-ignore lint/suspicious/noConfusingVoidType: a step or a handler may return nothing
  readonly step: <A extends JsonValue | undefined | void, E>(
    name: string,
    body: Effect.Effect<A, E> | ((step: StepContext) => Effect.Effect<A, E>)
  ) => Effect.Effect<A>
  readonly awaitInput: (options: AwaitInputOptions) => Effect.Effect<InputDecision>
  readonly reportUsage: (usage: UsageReport) => Effect.Effect<void>
  readonly progress: (report: ProgressInput) => Effect.Effect<void>
}
