/**
 * The reference: a bare `node:http` SSE server doing the same as Baton's
 * stream for N subscribers of one run: the same headers, the same `retry:`
 * hint and frame format, every event written to every connection. Nothing is
 * stored or read: it is the floor of what fan-out costs in Node.
 */
import { createServer, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import { wallClockMs } from "../../support/Stats.js"
import { memoryReport, onParentMessage, toParent } from "./Protocol.js"

const subscribers = new Set<ServerResponse>()
let seq = 0

const server = createServer((req, res) => {
  res.writeHead(200, {
    "content-type": "text/event-stream; charset=utf-8",
    "cache-control": "no-cache, no-transform",
    connection: "keep-alive",
    "x-accel-buffering": "no"
  })
  res.write("retry: 2000\n\n")
  subscribers.add(res)
  req.on("close", () => subscribers.delete(res))
})

/** The same envelope Baton sends for a content delta. */
const frame = (emittedAt: number): string => {
  seq++
  const event = {
    seq,
    type: "step.progress",
    timestamp: new Date().toISOString(),
    payload: {
      redacted: false,
      value: { step_id: "stream:0", kind: "content_delta", content_delta: String(emittedAt) }
    }
  }
  return `id: ${seq}\nevent: run_event\ndata: ${JSON.stringify(event)}\n\n`
}

onParentMessage((message) => {
  switch (message.type) {
    case "memory":
      toParent(memoryReport())
      return
    case "emit": {
      let left = message.count
      const tick = () => {
        const chunk = frame(wallClockMs())
        for (const res of subscribers) res.write(chunk)
        if (--left > 0) setTimeout(tick, message.intervalMs)
        else toParent({ type: "emitted" })
      }
      tick()
      return
    }
    case "stop":
      for (const res of subscribers) res.destroy()
      server.close()
      process.exit(0)
  }
})

server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo
  toParent({ type: "ready", url: `http://127.0.0.1:${port}/stream`, headers: {} })
})
