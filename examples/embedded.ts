/**
 * Baton embedded in a script, handlers and all: an engine on the in-memory
 * store with a worker in the same process. The handler streams a draft inside
 * a durable step, waits for approval without holding the worker, and
 * publishes; the script watches the run's events and approves when asked.
 */
import { memoryStorage } from "@baton/adapter-memory"
import { createEngine, type JsonValue, type RunContext, type RunEvent } from "@baton/core"

const words = (topic: string): ReadonlyArray<string> => [`${topic} `, "ships ", "today."]

/** Stands in for a model streaming its answer token by token. */
async function* stream(topic: string): AsyncGenerator<string> {
  for (const word of words(topic)) {
    await new Promise<void>((resolve) => setTimeout(resolve, 5))
    yield word
  }
}

async function draftAndPublish(run: RunContext) {
  const { topic } = run.input as { topic: string }
  // A durable step: its output is recorded, and a resumed run gets it back without running it again.
  const draft = await run.step("draft", async (step) => {
    let text = ""
    for await (const token of stream(topic)) {
      step.progress({ content_delta: token }) // one step.progress event per delta
      text += token
    }
    return text
  })
  // Suspends the run (no worker held) until a signal answers; the run then resumes from the top,
  // replaying the recorded draft.
  const decision = await run.awaitInput({ prompt: `Publish "${draft}"?`, actions: ["approve", "reject"] })
  if (decision.action === "reject") return { published: false, draft }
  return run.step("publish", () => ({ published: true, draft, note: decision.comment ?? null }))
}

const short = (value: unknown): string => {
  const text = JSON.stringify(value)
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}

export async function main(): Promise<{ events: ReadonlyArray<RunEvent>; output: JsonValue | null }> {
  const engine = createEngine({ storage: memoryStorage(), handlers: { default: draftAndPublish } })
  const worker = await engine.startWorker({ pollIntervalMs: 20 })
  try {
    const created = await engine.createRun({ input: { topic: "Baton" } })
    if (created._tag !== "Created") throw new Error("a run without an idempotency key is always new")
    const run = created.run

    // Replays from seq 1, then goes live, and ends after the terminal event.
    const events: RunEvent[] = []
    for await (const event of await engine.subscribe(run.id)) {
      console.log(`#${event.seq} ${event.type} ${short(event.payload.value)}`)
      events.push(event)
      if (event.type === "run.awaiting_input")
        await engine.signalRun(run.id, { action: "approve", comment: "looks good" })
    }
    const final = await engine.getRun(run.id)
    console.log("final status:", final.status)
    return { events, output: final.output }
  } finally {
    await worker.stop()
    await engine.dispose()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
