/**
 * The quickstart against a running Baton server (`pnpm start`):
 *
 *   API_BASE=http://127.0.0.1:3000 API_KEY=key_…:… pnpm --filter @baton/examples quickstart
 *
 * Creates a run of the built-in demo handler, prints its answer as the content
 * deltas stream in, approves it when it waits for input (REQUIRE_APPROVAL=1),
 * and reads the final state.
 */
import { randomUUID } from "node:crypto"
import type { Run } from "@baton/core"
import { createHttpClient } from "@baton/transport-http"

export interface QuickstartOptions {
  readonly baseUrl: string
  readonly apiKey: string
  readonly query?: string
  readonly requireApproval?: boolean
  /** Where the streamed text goes (default: stdout). */
  readonly write?: (text: string) => void
}

export async function main(options: QuickstartOptions): Promise<{ run: Run; streamed: string }> {
  const write = options.write ?? ((text: string) => process.stdout.write(text))
  const client = createHttpClient({ baseUrl: options.baseUrl, apiKey: options.apiKey })

  // The idempotency key makes the create safe to retry: the same key returns the same run.
  const { run } = await client.createRun(
    {
      input: {
        user_query: options.query ?? "What is durable execution?",
        require_approval: options.requireApproval ?? false
      }
    },
    { idempotencyKey: randomUUID() }
  )
  write(`run ${run.id} is ${run.status}\n`)

  let streamed = ""
  // Replays from seq 1, then follows live; resumes by Last-Event-ID on its own; ends after the terminal event.
  for await (const event of client.streamEvents(run.id)) {
    const value = event.payload.value as Record<string, unknown>
    if (event.type === "step.progress" && typeof value.content_delta === "string") {
      streamed += value.content_delta
      write(value.content_delta)
    } else if (event.type === "run.awaiting_input") {
      write(`\n[waiting: ${String(value.prompt)}] approving\n`)
      await client.signalRun(run.id, { action: "approve", comment: "from the quickstart" })
    } else if (event.type.startsWith("run.") && event.type !== "run.requeued") {
      write(`\n[${event.type}]\n`)
    }
  }

  const final = await client.getRun(run.id)
  write(`status: ${final.status}\noutput: ${JSON.stringify(final.output)}\n`)
  return { run: final, streamed }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const baseUrl = process.env.API_BASE ?? "http://127.0.0.1:3000"
  const apiKey = process.env.API_KEY
  if (apiKey === undefined || apiKey === "") {
    console.error(
      "Set API_KEY to a key_id:secret (the server prints one at start, or set BATON_BOOTSTRAP_KEY)."
    )
    process.exit(1)
  }
  await main({ baseUrl, apiKey, requireApproval: process.env.REQUIRE_APPROVAL === "1" })
}
