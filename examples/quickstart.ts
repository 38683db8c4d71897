/**
 * Baton embedded in a script: an engine on the in-memory store, one run
 * created idempotently, its events replayed as a stream, then cancelled.
 * (examples/embedded.ts adds a worker that executes the handler.)
 */
import { memoryStorage } from "@baton/adapter-memory"
import { createEngine, type RunEvent } from "@baton/core"

export async function main(): Promise<ReadonlyArray<RunEvent>> {
  const engine = createEngine({
    storage: memoryStorage(),
    handlers: { default: async () => ({ ok: true }) }
  })
  try {
    // The same key and body always answer with the same run.
    const created = await engine.createRun(
      { input: { user_query: "summarize the news" }, metadata: { team: "search" } },
      { idempotencyKey: "quickstart-1" }
    )
    if (created._tag === "KeyReused") throw new Error("this key was used with another body")
    const run = created.run
    console.log(`${created._tag} ${run.id}: ${run.status}`)

    await engine.cancelRun(run.id, { reason: "just a demo" })

    // Replays from seq 1 and ends after the terminal event.
    const events: RunEvent[] = []
    for await (const event of await engine.subscribe(run.id)) {
      console.log(`#${event.seq} ${event.type}`)
      events.push(event)
    }
    console.log("final status:", (await engine.getRun(run.id)).status)
    return events
  } finally {
    await engine.dispose()
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main()
