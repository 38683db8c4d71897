import { memoryStorage } from "@baton/adapter-memory"
import { type BatonEngine, createEngine, type JsonValue, type Run, type RunEvent } from "@baton/core"
import { afterEach, describe, expect, it } from "vitest"
import { demoAnswer, demoHandler, demoTokens } from "../src/DemoHandler.js"

const engines: BatonEngine[] = []
afterEach(async () => {
  await Promise.all(engines.splice(0).map((e) => e.dispose()))
})

const start = async (): Promise<BatonEngine> => {
  const engine = createEngine({ storage: memoryStorage(), handlers: { default: demoHandler } })
  engines.push(engine)
  await engine.startWorker({ pollIntervalMs: 10 })
  return engine
}

/** Creates a run, follows its stream to the end (answering a wait with `decide`), returns events and run. */
const execute = async (
  engine: BatonEngine,
  input: JsonValue,
  decide?: "approve" | "reject"
): Promise<{ events: ReadonlyArray<RunEvent>; run: Run }> => {
  const created = await engine.createRun({ input })
  if (created._tag !== "Created") throw new Error("expected a new run")
  const events: RunEvent[] = []
  for await (const event of await engine.subscribe(created.run.id)) {
    events.push(event)
    if (event.type === "run.awaiting_input") {
      if (decide === undefined) throw new Error("unexpected wait")
      await engine.signalRun(created.run.id, { action: decide })
    }
  }
  return { events, run: await engine.getRun(created.run.id) }
}

const deltas = (events: ReadonlyArray<RunEvent>): string[] =>
  events.flatMap((e) => {
    const value = e.payload.value as { kind?: string; content_delta?: string; step_id?: string }
    return e.type === "step.progress" && value.kind === "content_delta" && value.step_id === "answer:0"
      ? [value.content_delta ?? ""]
      : []
  })

describe("demoHandler", () => {
  it("streams the answer as content deltas of step answer, then succeeds with it", async () => {
    const engine = await start()
    const { events, run } = await execute(engine, { user_query: "What is Baton?" })
    const answer = demoAnswer("What is Baton?")
    expect(run.status).toBe("succeeded")
    expect(run.output).toEqual({ answer })
    expect(answer).toContain("What is Baton?")
    const tokens = deltas(events)
    expect(tokens).toEqual(demoTokens(answer))
    expect(tokens.length).toBeGreaterThan(5)
    expect(tokens.join("")).toBe(answer)
    const types = events.map((e) => e.type)
    expect(types.slice(0, 3)).toEqual(["run.queued", "run.started", "step.started"])
    expect(types.slice(-2)).toEqual(["step.done", "run.worker.succeeded"])
    expect(types).not.toContain("run.awaiting_input")
  })

  it("asks for approval first when require_approval is true, then answers on approve", async () => {
    const engine = await start()
    const { events, run } = await execute(
      engine,
      { user_query: "Summarise the quarter", require_approval: true },
      "approve"
    )
    const wait = events.find((e) => e.type === "run.awaiting_input")
    expect(wait?.payload.value).toMatchObject({
      prompt: 'Approve answering "Summarise the quarter"?',
      actions: ["approve", "reject"]
    })
    const waitAt = events.findIndex((e) => e.type === "run.awaiting_input")
    const firstStep = events.findIndex((e) => e.type === "step.started")
    expect(waitAt).toBeLessThan(firstStep)
    expect(run.status).toBe("succeeded")
    const answer = demoAnswer("Summarise the quarter")
    expect(run.output).toEqual({ answer })
    expect(deltas(events).join("")).toBe(answer)
  })

  it("succeeds with { published: false } on reject, without answering", async () => {
    const engine = await start()
    const { events, run } = await execute(
      engine,
      { user_query: "Delete prod?", require_approval: true },
      "reject"
    )
    expect(run.status).toBe("succeeded")
    expect(run.output).toEqual({ published: false })
    expect(events.map((e) => e.type)).not.toContain("step.started")
    expect(run.usage.steps).toBe(0)
  })

  it.each([
    ["a missing user_query", { question: "hi" }],
    ["a non-string user_query", { user_query: 42 }],
    ["a blank user_query", { user_query: "  ", require_approval: true }],
    ["an input that is not an object", "just a string"]
  ])("fails the run at once in step answer on %s", async (_label, input) => {
    const engine = await start()
    const { events, run } = await execute(engine, input)
    expect(run.status).toBe("failed")
    expect(run.error).toMatchObject({ reason_code: "STEP_FAILED" })
    expect(run.error?.message).toContain("input.user_query must be a non-empty string")
    const done = events.filter((e) => e.type === "step.done")
    expect(done).toHaveLength(1)
    expect(done[0]?.payload.value).toMatchObject({ step_id: "answer:0", outcome: "fail_run" })
  })
})
