/**
 * End to end over HTTP on the emulator: a server (the transport's routes on
 * @hono/node-server) and a worker share one Mongo-backed engine; a client
 * creates a run, replays its request, and reads its SSE stream to the end.
 */
import type { AddressInfo } from "node:net"
import { mongoStorage } from "@baton/adapter-mongo"
import { type BatonEngine, createEngine, Engine, type RunContext, type Worker } from "@baton/core"
import { batonApp } from "@baton/transport-http"
import { serve } from "@hono/node-server"
import { MongoClient } from "mongodb"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Emulator, emulatorBinary, startEmulator } from "./Emulator.js"
import { dropDatabase, freshDatabase } from "./support.js"

const KEY = `key_${"a".repeat(24)}:${"b".repeat(43)}`

const summarize = async (run: RunContext) => {
  const text = await run.step("generate", (step) => {
    for (const word of ["durable ", "runs ", "on ", "mongo"]) step.progress({ content_delta: word })
    return "durable runs on mongo"
  })
  return { text }
}

/** The `id:` and `event:` of each SSE message in a finished response body. */
const sseMessages = (body: string) =>
  body
    .split("\n\n")
    .map((block) =>
      Object.fromEntries(
        block.split("\n").map((line) => [line.split(":")[0], line.slice(line.indexOf(":") + 1).trim()])
      )
    )
    .filter((m) => m.event === "run_event")
    .map((m) => ({ id: Number(m.id), type: JSON.parse(m.data as string).type as string }))

const binary = emulatorBinary()

describe.skipIf(binary === null)(
  `HTTP API over the mongo adapter on the jongodb emulator${binary === null ? " [skipped: its binary is not installed for this platform]" : ""}`,
  () => {
    let emulator: Emulator
    let engine: BatonEngine
    let worker: Worker.WorkerHandle
    let server: ReturnType<typeof serve>
    let baseUrl: string
    const database = freshDatabase()

    beforeAll(async () => {
      emulator = await startEmulator()
      engine = createEngine({
        storage: mongoStorage({ url: emulator.url, database, serializeWrites: true, pollIntervalMs: 20 }),
        handlers: { summarize }
      })
      await engine.run(Engine.ensureKey(KEY, "default"))
      const app = batonApp(engine, {})
      const { s, port } = await new Promise<{ s: ReturnType<typeof serve>; port: number }>(
        (resolve, reject) => {
          const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
            resolve({ s, port: info.port })
          )
          s.once("error", reject)
        }
      )
      server = s
      baseUrl = `http://127.0.0.1:${port}`
      worker = await engine.startWorker({ pollIntervalMs: 10, heartbeatMs: 100, leaseMs: 5_000 })
    })

    afterAll(async () => {
      await worker?.stop({ graceMs: 0 })
      if (server !== undefined) {
        if ("closeAllConnections" in server) server.closeAllConnections()
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
      await engine?.dispose({ graceMs: 0 })
      if (emulator !== undefined) {
        const raw = new MongoClient(emulator.url)
        await dropDatabase(raw.db(database))
        await raw.close()
        await emulator.stop()
      }
    })

    it("creates a run, replays the request, and streams its events to the terminal one", async () => {
      const post = () =>
        fetch(`${baseUrl}/v1/runs`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${KEY}`,
            "content-type": "application/json",
            "idempotency-key": "http-smoke-1"
          },
          body: JSON.stringify({ handler: "summarize", input: { q: "why" } })
        })
      const created = await post()
      expect(created.status).toBe(201)
      const run = (await created.json()) as { id: string }
      const replayed = await post()
      expect(replayed.status).toBe(200)
      expect(replayed.headers.get("idempotent-replayed")).toBe("true")
      expect(((await replayed.json()) as { id: string }).id).toBe(run.id)

      // The server ends the stream after the terminal event: the whole body is the log.
      const stream = await fetch(`${baseUrl}/v1/runs/${run.id}/events/stream`, {
        headers: { authorization: `Bearer ${KEY}` }
      })
      expect(stream.status).toBe(200)
      const messages = sseMessages(await stream.text())
      expect(messages.map((m) => m.id)).toEqual(messages.map((_, i) => i + 1))
      expect(messages.map((m) => m.type)).toEqual([
        "run.queued",
        "run.started",
        "step.started",
        ...messages.filter((m) => m.type === "step.progress").map(() => "step.progress"),
        "step.done",
        "run.worker.succeeded"
      ])
      const final = await fetch(`${baseUrl}/v1/runs/${run.id}`, {
        headers: { authorization: `Bearer ${KEY}` }
      })
      expect(await final.json()).toMatchObject({
        status: "succeeded",
        output: { text: "durable runs on mongo" }
      })
    })
  }
)
