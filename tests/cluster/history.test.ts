/**
 * The history checker must be able to fail: good histories pass, and each
 * kind of bad one (gap, duplicate, out of order, two terminal events, a
 * terminal event not last, a client seeing something else than the log, GET
 * disagreeing with the fold of the log) is reported as such. The step
 * execution checker likewise.
 */
import { describe, expect, it } from "vitest"
import { checkEffects } from "./support/Effects.js"
import type { EffectLine } from "./support/Handlers.js"
import {
  checkHistories,
  checkRun,
  checkStream,
  foldLog,
  type ObservedEvent,
  type RunSnapshot,
  type StreamHistory,
  type ViolationKind
} from "./support/History.js"

const RUN_ID = "run_01JH0000000000000000000000"
const T0 = Date.parse("2026-11-28T12:00:00.000Z")
const at = (ms: number) => new Date(T0 + ms).toISOString()
const event = (seq: number, type: string, value: unknown): ObservedEvent => ({
  seq,
  type,
  timestamp: at(seq * 10),
  payload: { redacted: false, value }
})

/** A run of one step that succeeded: the log a worker writes. */
const LOG: ReadonlyArray<ObservedEvent> = [
  event(1, "run.queued", { handler: "work", metadata: { team: "a" } }),
  event(2, "run.started", { attempt: 1, worker_id: "w-1-abc" }),
  event(3, "step.started", { step_id: "s0:0", name: "s0", attempt: 1 }),
  event(4, "step.progress", { step_id: "s0:0", kind: "content_delta", content_delta: "hi" }),
  event(5, "step.done", { step_id: "s0:0", name: "s0", outcome: "succeeded", output: 1 }),
  event(6, "run.worker.succeeded", { output: { ok: true } })
]

const LIMITS = {
  max_steps: 100,
  max_duration_ms: 3_600_000,
  max_step_attempts: 3,
  max_tokens: null,
  max_cost_usd: null
}

/** What GET /runs/{id} answers for LOG (without request_id). */
const GET_RUN: Readonly<Record<string, unknown>> = {
  id: RUN_ID,
  status: "succeeded",
  handler: "work",
  input: { steps: 1 },
  metadata: { team: "a" },
  output: { ok: true },
  error: null,
  awaiting_input: null,
  limits: LIMITS,
  usage: { steps: 1, attempts: 1, tokens: 0, cost_usd: 0 },
  last_seq: 6,
  cancel_requested: false,
  created_at: at(10),
  started_at: at(20),
  finished_at: at(60),
  updated_at: at(60)
}

const stream = (...connections: Array<[number, ReadonlyArray<ObservedEvent>]>): StreamHistory => ({
  client: "c1",
  runId: RUN_ID,
  connections: connections.map(([lastEventId, events], i) => ({
    instance: `S${i}`,
    lastEventId,
    events: [...events],
    end: "test"
  })),
  complete: true,
  failure: null
})

const kinds = (violations: ReadonlyArray<{ kind: ViolationKind }>) => violations.map((v) => v.kind)
const e = (seq: number) => LOG[seq - 1]!

describe("history checker: streams", () => {
  it("passes a whole stream on one connection, and one resumed across instances", () => {
    expect(checkStream(stream([0, LOG]), LOG)).toEqual([])
    expect(checkStream(stream([0, LOG.slice(0, 2)], [2, []], [2, LOG.slice(2)]), LOG)).toEqual([])
  })

  it("reports a gap, also across a resume", () => {
    expect(kinds(checkStream(stream([0, [e(1), e(2), e(4), e(5), e(6)]]), LOG))).toEqual(["gap"])
    expect(kinds(checkStream(stream([0, [e(1), e(2)]], [2, [e(4), e(5), e(6)]]), LOG))).toEqual(["gap"])
  })

  it("reports a duplicate, also one a resumed connection sends again", () => {
    expect(kinds(checkStream(stream([0, [e(1), e(2), e(2), e(3), e(4), e(5), e(6)]]), LOG))).toEqual([
      "duplicate"
    ])
    expect(kinds(checkStream(stream([0, [e(1), e(2), e(3)]], [3, [e(3), e(4), e(5), e(6)]]), LOG))).toEqual([
      "duplicate"
    ])
  })

  it("reports events out of order", () => {
    expect(kinds(checkStream(stream([0, [e(1), e(3), e(2), e(4), e(5), e(6)]]), LOG))).toEqual([
      "gap",
      "out_of_order"
    ])
  })

  it("reports two terminal events, a terminal event not last, and none at all", () => {
    const cancelled = event(7, "run.cancelled", {})
    expect(kinds(checkStream(stream([0, [...LOG, cancelled]])))).toEqual([
      "terminal_not_last",
      "several_terminals"
    ])
    const after = event(7, "step.progress", { step_id: "s0:0", kind: "content_delta", content_delta: "x" })
    expect(kinds(checkStream(stream([0, [...LOG, after]])))).toEqual(["terminal_not_last"])
    expect(kinds(checkStream(stream([0, LOG.slice(0, 5)])))).toEqual(["no_terminal"])
  })

  it("reports a client that gave up before the terminal event", () => {
    const gaveUp = { ...stream([0, LOG.slice(0, 3)]), complete: false, failure: "gave up" }
    expect(kinds(checkStream(gaveUp, LOG))).toEqual(["no_terminal", "no_terminal"])
  })

  it("reports an event that differs from the log at its seq", () => {
    const other = event(4, "step.progress", { step_id: "s0:0", kind: "content_delta", content_delta: "ho" })
    expect(kinds(checkStream(stream([0, [e(1), e(2), e(3), other, e(5), e(6)]]), LOG))).toEqual([
      "differs_from_log"
    ])
  })
})

describe("history checker: runs", () => {
  const snapshot = (run: Readonly<Record<string, unknown>>, log = LOG): RunSnapshot => ({ run, log })

  it("folds the log to the public run", () => {
    expect(foldLog(GET_RUN, LOG)).toEqual(GET_RUN)
    expect(checkRun(snapshot(GET_RUN))).toEqual([])
  })

  it("reports GET disagreeing with the fold of its log, field by field", () => {
    const mismatches = checkRun(snapshot({ ...GET_RUN, output: { ok: false }, last_seq: 7 }))
    expect(kinds(mismatches)).toEqual(["fold_mismatch", "fold_mismatch"])
    expect(mismatches.map((m) => m.message.split(":")[0])).toEqual(["output", "last_seq"])
    expect(kinds(checkRun(snapshot({ ...GET_RUN, updated_at: at(61) })))).toEqual(["fold_mismatch"])
  })

  it("reports a run that is not over, and a broken log", () => {
    const running = foldLog(GET_RUN, LOG.slice(0, 4))
    expect(kinds(checkRun(snapshot(running, LOG.slice(0, 4))))).toEqual(["no_terminal", "not_terminal"])
    expect(kinds(checkRun(snapshot(GET_RUN, [e(1), e(2), e(2), e(3), e(4), e(5), e(6)])))).toContain(
      "duplicate"
    )
  })

  it("reports a stream of a run nobody snapshotted", () => {
    expect(kinds(checkHistories([stream([0, LOG])], new Map()))).toEqual(["unknown_run"])
    expect(checkHistories([stream([0, LOG])], new Map([[RUN_ID, snapshot(GET_RUN)]]))).toEqual([])
  })
})

describe("step execution checker", () => {
  const snapshots = new Map([[RUN_ID, { run: GET_RUN, log: LOG }]])
  const line = (attempt: number, phase: EffectLine["phase"], step = "s0:0"): EffectLine => ({
    run: RUN_ID,
    step,
    attempt,
    pid: 1,
    phase
  })

  it("passes one execution per logged attempt", () => {
    expect(checkEffects([line(1, "enter"), line(1, "return")], snapshots).problems).toEqual([])
  })

  it("reports a finished step run again, an attempt run twice, and an execution the log does not know", () => {
    const again = checkEffects([line(1, "enter"), line(1, "return"), line(2, "enter")], snapshots).problems
    expect(again.join("\n")).toMatch(/ran again \(attempt 2.*after it finished at attempt 1/)
    const twice = checkEffects([line(1, "enter"), line(1, "enter"), line(1, "return")], snapshots).problems
    expect(twice.join("\n")).toMatch(/executed twice/)
    const unknown = checkEffects(
      [line(1, "enter"), line(1, "return"), line(1, "enter", "s9:0")],
      snapshots
    ).problems
    expect(unknown.join("\n")).toMatch(/s9:0: attempt 1 ran .* no step.started/)
    expect(checkEffects([], snapshots).problems.join("\n")).toMatch(/left no trace/)
  })
})
