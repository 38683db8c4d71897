/**
 * SPEC §5: "A slow reader is never allowed to grow server memory without
 * bound: past a buffer limit the server ends that connection and the client
 * resumes by id." And the other side of it: a reader that keeps up is not cut,
 * however long the replay.
 */
import { randomUUID } from "node:crypto"
import { batonRoutes } from "@baton/transport-http"
import { Hono } from "hono"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  allEvents,
  createRun,
  eventually,
  expectContiguous,
  isTerminalEvent,
  openStream,
  type SseEvent,
  waitForRun,
  waitForStatus
} from "./support/Client.js"
import { type Harness, startHarness } from "./support/Harness.js"

const SMALL_LIMIT = 8 * 1024

let standard: Harness
let small: Harness
beforeAll(async () => {
  ;[standard, small] = await Promise.all([
    startHarness(),
    startHarness({ bufferLimitBytes: SMALL_LIMIT, stallMs: 1000 })
  ])
})
afterAll(async () => {
  await Promise.all([standard?.close(), small?.close()])
})

const seqs = (events: ReadonlyArray<SseEvent>) => events.map((e) => e.data.seq as number)

/** A finished `gated` run whose log holds `count` deltas of `size` characters. */
const bigFinishedRun = async (h: Harness, count: number, size: number) => {
  const gate = `gate-${randomUUID()}`
  h.gates.open(gate)
  const run = await createRun(h, h.operatorKey, {
    input: { gate, before: count, after: 0, size },
    handler: "gated"
  })
  return waitForStatus(h, h.operatorKey, run.id, "succeeded")
}

describe("buffer limit", () => {
  it("lets a reader that keeps up replay a log larger than the buffer limit (1 MiB) on one connection", async () => {
    const h = standard
    // About 1.6 MB of events.
    const run = await bigFinishedRun(h, 1500, 1000)
    const stream = await openStream(h, h.operatorKey, run.id)
    const events = await stream.readToEnd(15_000)
    expectContiguous(seqs(events))
    expect(events).toHaveLength(run.last_seq)
    expect(isTerminalEvent(events.at(-1)!)).toBe(true)
  })

  it("ends a slow reader's response before the terminal event; resuming by Last-Event-ID yields every event exactly once", async () => {
    const h = small
    const gate = `gate-${randomUUID()}`
    // 1 delta now, then about 4 MB of deltas once the gate opens: far more than the
    // buffer limit plus what the sockets between server and client can hold.
    const created = await createRun(h, h.operatorKey, {
      input: { gate, before: 1, after: 4000, size: 1000 },
      handler: "gated"
    })
    await waitForRun(h, h.operatorKey, created.id, (r) => r.last_seq >= 4, "held in its step")
    // Connected, but not reading.
    const slow = await openStream(h, h.operatorKey, created.id)
    h.gates.open(gate)
    const run = await waitForStatus(h, h.operatorKey, created.id, "succeeded")

    // The server lets go of the slow reader (its subscription ends) without being read from.
    await eventually(() => h.openFeedSubscriptions() === 0, "the server to let go of the slow reader", 10_000)
    // Now read what the slow connection got: it must end (cleanly or not), and before the terminal event.
    const firstEvents: SseEvent[] = []
    for (;;) {
      let e: SseEvent | null
      try {
        e = await slow.next(10_000)
      } catch (error) {
        if (String(error).includes("timed out"))
          throw new Error(`the server never ended the slow reader's response (${String(error)})`)
        break // the connection was cut: as good as an end
      }
      if (e === null) break
      firstEvents.push(e)
    }
    expectContiguous(seqs(firstEvents))
    expect(firstEvents.length).toBeLessThan(run.last_seq)
    expect(firstEvents.some(isTerminalEvent)).toBe(false)

    // Resume by Last-Event-ID, reading promptly, until the terminal event.
    const all = [...firstEvents]
    for (
      let reconnects = 0;
      reconnects < 500 && !(all.length > 0 && isTerminalEvent(all.at(-1)!));
      reconnects++
    ) {
      const last = all.at(-1)?.id
      const stream = await openStream(
        h,
        h.operatorKey,
        created.id,
        last === undefined ? {} : { lastEventId: last }
      )
      all.push(...(await stream.readToEnd(10_000)))
    }
    expectContiguous(seqs(all))
    expect(all).toHaveLength(run.last_seq)
    expect(isTerminalEvent(all.at(-1)!)).toBe(true)
    expect(all.map((e) => e.data)).toEqual(await allEvents(h, h.operatorKey, created.id))
  })

  it("cuts a stalled reader where no Node socket is underneath (app.request): its body errors and its subscription is freed", async () => {
    const h = small
    const app = new Hono().route(
      "/v1",
      batonRoutes(h.engine, { sse: { bufferLimitBytes: SMALL_LIMIT, stallMs: 300 } })
    )
    const gate = `gate-${randomUUID()}`
    // About 200 KB once the gate opens: far past the 8 KiB limit, with nothing between server and reader.
    const created = await createRun(h, h.operatorKey, {
      input: { gate, before: 1, after: 200, size: 1000 },
      handler: "gated"
    })
    await waitForRun(h, h.operatorKey, created.id, (r) => r.last_seq >= 4, "held in its step")
    await eventually(() => h.openFeedSubscriptions() === 0, "earlier tests' streams to be released", 10_000)
    const res = await app.request(`/v1/runs/${created.id}/events/stream`, {
      headers: { authorization: `Bearer ${h.operatorKey}` }
    })
    expect(res.status).toBe(200)
    await eventually(() => h.openFeedSubscriptions() === 1, "the stream's subscription")
    h.gates.open(gate)
    await waitForStatus(h, h.operatorKey, created.id, "succeeded")
    // Nobody reads the body: the server gives up on it and leaves the run's reader.
    await eventually(() => h.openFeedSubscriptions() === 0, "the server to let go of the stalled body")
    const reader = res.body!.getReader()
    const readAll = async () => {
      for (;;) if ((await reader.read()).done) return
    }
    await expect(readAll()).rejects.toThrow(/read nothing/)
  })
})
