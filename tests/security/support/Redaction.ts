/**
 * Redaction end to end: secrets put into a run's input, its step output, its
 * progress and its run output (the `leaky` handler, support/Handlers.ts), and
 * into a signal's comment and input, are
 * in no API answer, no SSE frame (live and replayed), no line of the server's
 * output, and nowhere in the store as read through the back door
 * (support/BackDoor.ts); every event that lost something says
 * `payload.redacted: true`.
 */
import { randomBytes, randomUUID } from "node:crypto"
import { expect, it } from "vitest"
import { call, readLog } from "../../cluster/support/Api.js"
import type { ServerProcess } from "../../cluster/support/Cluster.js"
import { waitFor } from "../../cluster/support/Wait.js"
import { dumpStore } from "./BackDoor.js"
import { secretStrings, secretsFor } from "./Handlers.js"
import type { Register } from "./Suite.js"

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
const nonceOf = (): string => Array.from(randomBytes(24), (b) => ALNUM[b % ALNUM.length]).join("")

/** The raw text of a run's SSE stream from `after`, until the server ends it. */
const streamText = async (server: ServerProcess, key: string, runId: string): Promise<string> => {
  const response = await fetch(`${server.url}/v1/runs/${runId}/events/stream`, {
    headers: { authorization: `Bearer ${key}`, accept: "text/event-stream" },
    signal: AbortSignal.timeout(30_000)
  })
  expect(response.status).toBe(200)
  return response.text()
}

const REDACTED = "[REDACTED]"

export const redactionPart: Register = (get, lane) => {
  it(`redaction on ${lane}: secrets in input, step output, progress and signals reach no answer, SSE frame, log line or stored byte`, async (ctx) => {
    const context = get()
    if (context === null) return ctx.skip(`${lane} not found (see the warning above)`)
    const { server, operatorKey, cluster } = context.server
    const nonce = nonceOf()
    const s = secretsFor(nonce)
    const secrets = secretStrings(nonce)
    const input = {
      nonce,
      password: s.password,
      api_key: s.apiKey,
      credentials: { token: s.token, authorization: s.authorization },
      prompt: `use Bearer ${s.bearer} with ${s.batonKey}`,
      list: [s.batonKey, { apiKey: s.apiKey }]
    }
    const answers: string[] = []
    const created = await call(server, operatorKey, "POST", "/runs", {
      json: { handler: "leaky", input, metadata: { probe: `redaction-${nonce.slice(0, 6)}` } },
      headers: { "idempotency-key": randomUUID() }
    })
    expect(created.status, JSON.stringify(created.body)).toBe(201)
    answers.push(JSON.stringify(created.body))
    const runId = created.body.id as string
    // Live: connected while the run is queued or running.
    const live = streamText(server, operatorKey, runId)

    const final = await waitFor("the leaky run to end", async () => {
      const seen = await call(server, operatorKey, "GET", `/runs/${runId}`)
      return ["succeeded", "failed"].includes(seen.body.status) ? seen : undefined
    })
    answers.push(JSON.stringify(final.body))
    expect(final.body.status, JSON.stringify(final.body.error)).toBe("succeeded")
    const log = await readLog(server, operatorKey, runId)
    answers.push(JSON.stringify(log))
    answers.push(JSON.stringify((await call(server, operatorKey, "GET", "/runs?limit=100")).body))
    answers.push(
      JSON.stringify(
        (await call(server, operatorKey, "GET", `/runs?metadata[probe]=redaction-${nonce.slice(0, 6)}`)).body
      )
    )
    // A signal's input and comment are redacted too: `approval` returns the comment as its output.
    const waiting = await call(server, operatorKey, "POST", "/runs", {
      json: { handler: "approval", input: { nonce } },
      headers: { "idempotency-key": randomUUID() }
    })
    expect(waiting.status).toBe(201)
    await waitFor("the approval run to await input", async () => {
      const seen = await call(server, operatorKey, "GET", `/runs/${waiting.body.id}`)
      return seen.body.status === "awaiting_input"
    })
    const signalled = await call(server, operatorKey, "POST", `/runs/${waiting.body.id}/signal`, {
      json: { action: "approve", comment: `approved with Bearer ${s.bearer}`, input: { token: s.token } }
    })
    expect(signalled.status, JSON.stringify(signalled.body)).toBe(202)
    answers.push(JSON.stringify(signalled.body))
    const approved = await waitFor("the approval run to end", async () => {
      const seen = await call(server, operatorKey, "GET", `/runs/${waiting.body.id}`)
      return seen.body.status === "succeeded" ? seen : undefined
    })
    answers.push(JSON.stringify(approved.body))
    expect(approved.body.output).toEqual({ approved: true, comment: `approved with ${REDACTED}` })
    const signalLog = await readLog(server, operatorKey, waiting.body.id)
    answers.push(JSON.stringify(signalLog))
    expect(signalLog.find((e) => e.type === "run.signal_received")?.payload.redacted).toBe(true)
    const signalStream = await streamText(server, operatorKey, waiting.body.id)

    const replayed = await streamText(server, operatorKey, runId)
    const liveText = await live
    const stored = await dumpStore(context.store)

    // The checks mean something: the run's data is there, with the secrets replaced.
    expect(final.body.input.nonce).toBe(nonce)
    expect(final.body.input.password).toBe(REDACTED)
    expect(final.body.input.prompt).toBe(`use ${REDACTED} with ${REDACTED}`)
    expect(final.body.output.step.password).toBe(REDACTED)
    expect(final.body.output.final.note).toBe(`the key is ${REDACTED}, keep it safe`)
    const types = log.map((e) => e.type)
    expect(types).toContain("step.progress")
    expect(types).toContain("step.done")
    expect(replayed).toContain("run.worker.succeeded")
    expect(liveText).toContain("step.progress")
    expect(stored).toContain(runId)
    expect(stored).toContain(REDACTED)

    const where: ReadonlyArray<[string, string]> = [
      ["API answers", answers.join("\n")],
      ["the live SSE stream", liveText],
      ["the replayed SSE stream", replayed],
      ["the signalled run's SSE stream", signalStream],
      ["the server's output", server.output()],
      [`the store (${context.store.label})`, stored]
    ]
    for (const [place, text] of where)
      for (const secret of secrets) expect(text.includes(secret), `${place} contain ${secret}`).toBe(false)
    expect(server.output().includes(operatorKey.split(":")[1]!), "the bootstrap secret in the log").toBe(
      false
    )
    expect(cluster.live().length).toBe(1)

    // Every event that carried a secret says so; the others do not claim it.
    for (const event of log) {
      const carried = JSON.stringify(event.payload).includes(REDACTED)
      expect(event.payload.redacted, `${event.type} #${event.seq} payload.redacted`).toBe(carried)
    }
    const flagged = log.filter((e) => e.payload.redacted === true).map((e) => e.type)
    expect(flagged).toEqual(expect.arrayContaining(["step.progress", "step.done", "run.worker.succeeded"]))
  }, 60_000)
}
