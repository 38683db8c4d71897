/**
 * Baton's side: one engine on a fresh Postgres schema served by `batonApp`,
 * one run whose handler streams a content delta whenever the parent asks
 * (carrying the emit time), and every subscriber on that run's
 * `GET /v1/runs/{id}/events/stream`. argv: the Postgres URL.
 */
import { startBaton } from "../../support/Baton.js"
import { serveBaton } from "../../support/HttpServer.js"
import { startCounting } from "../../support/RoundTrips.js"
import { wallClockMs } from "../../support/Stats.js"
import { memoryReport, onParentMessage, toParent } from "./Protocol.js"

const url = process.argv[2]
if (url === undefined) throw new Error("usage: BatonSseServer.ts <postgres url>")

/** The step's progress function once the handler runs, and the end of the run. */
let progress: ((delta: string) => void) | null = null
let finish: () => void = () => {}
const finished = new Promise<void>((resolve) => {
  finish = resolve
})
let handlerStarted: () => void = () => {}
const started = new Promise<void>((resolve) => {
  handlerStarted = resolve
})

const baton = await startBaton({
  backend: "postgres",
  url,
  handlers: {
    stream: async (run) => {
      await run.step("stream", async (step) => {
        progress = (delta) => step.progress({ content_delta: delta })
        handlerStarted()
        await finished
      })
    }
  }
})
// Every stream waits up to 5 s for a pool connection; with thousands of streams the adapter default (10) is the
// setting under test, so it is kept.
const http = await serveBaton(baton.engine)
const worker = await baton.engine.startWorker({ concurrency: 1 })
const created = await baton.engine.createRun({ handler: "stream", input: null })
if (created._tag !== "Created") throw new Error("the run was not created")
await started
// Counted from the first event: the subscriptions' own statements (auth, ownership) are not per event.
let roundTrips = startCounting("pg")

onParentMessage((message) => {
  switch (message.type) {
    case "memory":
      toParent(memoryReport())
      return
    case "emit": {
      roundTrips = startCounting("pg")
      let left = message.count
      const tick = () => {
        progress?.(String(wallClockMs()))
        if (--left > 0) setTimeout(tick, message.intervalMs)
        else {
          toParent({ type: "round-trips", count: roundTrips() / message.count })
          toParent({ type: "emitted" })
        }
      }
      tick()
      return
    }
    case "stop":
      finish()
      void (async () => {
        await http.close()
        await worker.stop({ graceMs: 1000 })
        await baton.close()
        process.exit(0)
      })()
  }
})

toParent({
  type: "ready",
  url: `${http.baseUrl}/v1/runs/${created.run.id}/events/stream`,
  headers: { authorization: `Bearer ${http.key}` }
})
