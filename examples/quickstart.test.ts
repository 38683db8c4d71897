import { loadConfig, type RunningServer, startServer } from "@baton/server"
import { afterAll, beforeAll, expect, it } from "vitest"
import { main } from "./quickstart.js"

const KEY = `key_${"q".repeat(24)}:${"s".repeat(43)}`
let server: RunningServer

beforeAll(async () => {
  server = await startServer({
    config: loadConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      // The example is about the API; the default (PGlite in .baton/data) would write into the repository.
      BATON_STORAGE: "memory",
      BATON_BOOTSTRAP_KEY: KEY,
      BATON_WORKER_CONCURRENCY: "2"
    })
  })
})
afterAll(async () => {
  await server?.close()
})

it("takes a run of the demo handler to succeeded, printing the answer as it streams", async () => {
  const printed: string[] = []
  const { run, streamed } = await main({
    baseUrl: server.url,
    apiKey: KEY,
    query: "What is Baton?",
    write: (t) => printed.push(t)
  })
  expect(run.status).toBe("succeeded")
  expect(streamed.length).toBeGreaterThan(0)
  expect(run.output).toMatchObject({ answer: streamed })
  expect(printed.join("")).toContain(streamed)
})

it("stops at awaiting_input with require_approval and finishes after the approve signal", async () => {
  const printed: string[] = []
  const { run } = await main({
    baseUrl: server.url,
    apiKey: KEY,
    requireApproval: true,
    write: (t) => printed.push(t)
  })
  expect(printed.join("")).toContain("[waiting:")
  expect(run.status).toBe("succeeded")
  const events = await server.engine.readEvents(run.id, { limit: 1000 })
  const types = events.data.map((e) => e.type)
  expect(types.indexOf("run.awaiting_input")).toBeGreaterThan(0)
  expect(types.indexOf("run.signal_received")).toBeGreaterThan(types.indexOf("run.awaiting_input"))
  expect(types.at(-1)).toBe("run.worker.succeeded")
})
