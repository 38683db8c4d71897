/**
 * The handlers the cluster's server processes execute, loaded by each
 * process from the `baton.config.ts` the harness writes into the cluster's
 * directory (it re-exports this module's default).
 *
 * Every step *execution* leaves a trace outside the engine: a line appended
 * to the effects file (`BATON_CLUSTER_EFFECTS`) when the step's function is
 * entered and when it returns. The tests count those lines against the event
 * log, so "a finished step never runs again" is checked by a side effect the
 * engine cannot hide or fake.
 *
 * Only `import type` from Baton: the file is imported from a temporary
 * directory, and needs nothing resolved from there.
 */
import { appendFileSync, existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { setTimeout as sleep } from "node:timers/promises"
import type { Handler, JsonValue, RunContext, StepContext } from "@baton/core"

/** One line of the effects file. */
export interface EffectLine {
  readonly run: string
  readonly step: string
  readonly attempt: number
  readonly pid: number
  readonly phase: "enter" | "return"
}

/** What a `work` run does, from its input. */
export interface WorkInput {
  /** Steps, named `s0`, `s1`, … */
  readonly steps: number
  /** Progress deltas each step streams (default 2). */
  readonly deltas?: number
  /** Pause before each delta (default 5 ms). */
  readonly delayMs?: number
  /**
   * Step `step` (its first attempt only) does not return until the file
   * `gate-<gate>` exists in the effects directory: where a test wants a
   * worker to be killed mid-step.
   */
  readonly hold?: { readonly step: number; readonly gate: string }
}

const effectsFile = (): string => {
  const file = process.env.BATON_CLUSTER_EFFECTS
  if (file === undefined || file === "") throw new Error("BATON_CLUSTER_EFFECTS is not set.")
  return file
}

/** The gate file a held step waits for. */
export const gatePath = (effects: string, gate: string): string => join(dirname(effects), `gate-${gate}`)

const record = (run: RunContext, step: StepContext, phase: EffectLine["phase"]) => {
  const line: EffectLine = {
    run: run.runId,
    step: step.stepId,
    attempt: step.attempt,
    pid: process.pid,
    phase
  }
  // One small O_APPEND write per line: lines of concurrent processes never interleave.
  appendFileSync(effectsFile(), `${JSON.stringify(line)}\n`)
}

const isRecord = (value: JsonValue): value is Record<string, JsonValue> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

const workInput = (input: JsonValue): WorkInput => {
  if (!isRecord(input) || typeof input.steps !== "number") throw new Error("work: input.steps is required.")
  return input as unknown as WorkInput
}

const waitForGate = async (path: string, signal: AbortSignal): Promise<void> => {
  while (!existsSync(path)) {
    signal.throwIfAborted()
    await sleep(20)
  }
}

/** A step that streams a few deltas and records its execution. */
const stepBody =
  (run: RunContext, index: number, spec: WorkInput) =>
  async (step: StepContext): Promise<JsonValue> => {
    record(run, step, "enter")
    const deltas = spec.deltas ?? 2
    for (let d = 0; d < deltas; d++) {
      await sleep(spec.delayMs ?? 5, undefined, { signal: step.signal })
      step.progress({ content_delta: `s${index}.${d} ` })
    }
    if (spec.hold !== undefined && spec.hold.step === index && step.attempt === 1)
      await waitForGate(gatePath(effectsFile(), spec.hold.gate), step.signal)
    record(run, step, "return")
    return { step: index, attempt: step.attempt }
  }

/** `work`: `steps` durable steps in a row, then `{ steps }`. */
export const work: Handler = async (run) => {
  const spec = workInput(run.input)
  for (let i = 0; i < spec.steps; i++) await run.step(`s${i}`, stepBody(run, i, spec))
  return { steps: spec.steps }
}

/** `approval`: one step, a wait for a human, one more step; returns the decision. */
export const approval: Handler = async (run) => {
  const spec: WorkInput = { steps: 2, deltas: 1 }
  await run.step("before", stepBody(run, 0, spec))
  const decision = await run.awaitInput({ prompt: "Go on?", actions: ["approve", "reject"] })
  if (decision.action === "reject") return { approved: false }
  await run.step("after", stepBody(run, 1, spec))
  return { approved: true, comment: decision.comment ?? null }
}

export default { handlers: { work, approval } }
