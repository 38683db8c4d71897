import {
  Engine,
  type EventRow,
  type Principal,
  type Run,
  type RunRecord,
  RunState,
  RunStore
} from "@baton/core"
import { Effect } from "effect"
import { expect } from "vitest"
import { type Harness, newKey } from "../Harness.js"

export const createRun = async (
  h: Harness,
  principal: Principal,
  handler: string,
  body: Record<string, unknown> = {}
): Promise<Run> => {
  const result = await h.run(
    Engine.createRun(principal, { input: { n: 1 }, handler, ...body }, { idempotencyKey: newKey() })
  )
  if (result._tag !== "Created") throw new Error(`expected Created, got ${result._tag}`)
  return result.run
}

export const getRecord = async (h: Harness, runId: string): Promise<RunRecord> => {
  const run = await h.run(Effect.flatMap(RunStore, (s) => s.get(runId)))
  if (run === null) throw new Error(`run ${runId} is missing`)
  return run
}

export const readAll = (h: Harness, runId: string): Promise<ReadonlyArray<EventRow>> =>
  h.run(Effect.flatMap(RunStore, (s) => s.readEvents(runId, 0, 100_000)))

/** Claims with `now` (default: a little ahead of the wall clock so fresh runs are available). */
export const claim = (
  h: Harness,
  handler: string,
  options: { workerId?: string; max?: number; leaseMs?: number; now?: number } = {}
): Promise<ReadonlyArray<RunRecord>> =>
  h.run(
    Effect.flatMap(RunStore, (s) =>
      s.claim({
        workerId: options.workerId ?? "worker-1",
        handlers: [handler],
        leaseMs: options.leaseMs ?? 30_000,
        max: options.max ?? 1,
        now: options.now ?? Date.now() + 1
      })
    )
  )

/** Creates and claims one run; returns it running with its lease. */
export const runningRun = async (h: Harness, principal: Principal, handler: string): Promise<RunRecord> => {
  const run = await createRun(h, principal, handler)
  const claimed = await claim(h, handler)
  expect(claimed.map((r) => r.id)).toEqual([run.id])
  return claimed[0]!
}

/** Starts step `stepId` (attempt 1) under the run's lease. */
export const startStep = (h: Harness, run: RunRecord, stepId: string) =>
  apply(
    h,
    run.id,
    RunState.RunCommand.StartStep({
      leaseToken: run.lease_token!,
      stepId,
      name: stepId.split(":")[0]!,
      attempt: 1
    }),
    run.lease_token
  )

export const apply = (
  h: Harness,
  runId: string,
  command: RunState.RunCommand,
  leaseToken: string | null = null
) => h.run(Engine.applyCommand(runId, command, { leaseToken }))

export const applyEither = (
  h: Harness,
  runId: string,
  command: RunState.RunCommand,
  leaseToken: string | null = null
) => h.either(Engine.applyCommand(runId, command, { leaseToken }))

/** Asserts seqs are exactly 1..n. */
export const expectGapless = (events: ReadonlyArray<{ seq: number }>): void => {
  expect(events.map((e) => e.seq)).toEqual(Array.from({ length: events.length }, (_, i) => i + 1))
}

/** The name of a case that needs a capability: when the adapter lacks it, the name says why it is skipped. */
export const withReason = (available: boolean, name: string, capability: string): string =>
  available ? name : `${name} [skipped: the adapter declares no ${capability}]`

/** Resolves once the wall clock has moved to a later millisecond (at most ~1 ms). */
export const nextMillisecond = async (): Promise<void> => {
  const start = Date.now()
  while (Date.now() === start) await new Promise<void>((resolve) => setImmediate(resolve))
}
