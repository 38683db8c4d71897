import { expect, it, vi } from "vitest"
import { main } from "./embedded.js"

it("runs the embedded example: a streamed draft, an approval, a published result", async () => {
  const log = vi.spyOn(console, "log").mockImplementation(() => {})
  try {
    const { events, output } = await main()
    expect(events.map((e) => e.type)).toEqual([
      "run.queued",
      "run.started",
      "step.started",
      "step.progress",
      "step.progress",
      "step.progress",
      "step.done",
      "run.awaiting_input",
      "run.signal_received",
      "run.requeued",
      "run.started",
      "step.started",
      "step.done",
      "run.worker.succeeded"
    ])
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1))
    const draft = "Baton ships today."
    const deltas = events
      .filter((e) => e.type === "step.progress")
      .map((e) => e.payload.value as { step_id: string; content_delta: string })
    expect(deltas.map((d) => d.step_id)).toEqual(["draft:0", "draft:0", "draft:0"])
    expect(deltas.map((d) => d.content_delta).join("")).toBe(draft)
    expect(events[7]!.payload.value).toMatchObject({
      prompt: `Publish "${draft}"?`,
      actions: ["approve", "reject"]
    })
    expect(events[8]!.payload.value).toEqual({ action: "approve", comment: "looks good" })
    expect(events[9]!.payload.value).toEqual({ reason: "signal", attempt: 2 })
    // The resumed run replayed the draft from the log: the second execution started only "publish".
    expect(events[11]!.payload.value).toMatchObject({ step_id: "publish:0", attempt: 1 })
    const result = { published: true, draft, note: "looks good" }
    expect(events.at(-1)!.payload.value).toEqual({ output: result })
    expect(output).toEqual(result)
    // Every event was printed as `#<seq> <type> <short payload>`.
    const lines = log.mock.calls.map((args) => args.join(" "))
    expect(lines.filter((l) => l.startsWith("#"))).toHaveLength(events.length)
    expect(lines[0]).toBe('#1 run.queued {"handler":"default","metadata":{}}')
    expect(lines.at(-1)).toBe("final status: succeeded")
  } finally {
    log.mockRestore()
  }
})
