/**
 * SPEC §5 over a real server: framing, replay, resumption by Last-Event-ID or
 * after_seq with no gap and no duplicate, the end of the response after the
 * terminal event, heartbeats, JSON errors before the stream, and client aborts.
 */
import { randomUUID } from "node:crypto"
import { describe, expect, it } from "vitest"
import {
  allEvents,
  createRun,
  eventually,
  expectContiguous,
  expectError,
  isTerminalEvent,
  newCustomer,
  openStream,
  readRaw,
  request,
  type SseEvent,
  waitForRun,
  waitForStatus
} from "./support/Client.js"
import { useHarness } from "./support/Harness.js"

const h = useHarness()

const seqs = (events: ReadonlyArray<SseEvent>) => events.map((e) => e.data.seq as number)

/** A finished `stream` run with 3 deltas: 8 events. */
const finishedRun = async () => {
  const run = await createRun(h, h.operatorKey, { input: { deltas: ["a", "b", "c"] }, handler: "stream" })
  return waitForStatus(h, h.operatorKey, run.id, "succeeded")
}

/** A `gated` run with `before` deltas written, held in its step until `open()`. */
const heldRun = async (before = 2, after = 2) => {
  const gate = `gate-${randomUUID()}`
  const run = await createRun(h, h.operatorKey, { input: { gate, before, after }, handler: "gated" })
  // queued, started, step.started, then `before` progress events
  const held = await waitForRun(h, h.operatorKey, run.id, (r) => r.last_seq >= 3 + before, "held in its step")
  return { run: held, open: () => h.gates.open(gate) }
}

describe("framing and replay", () => {
  it("sends a retry hint first, then each event as id/event/data with the envelope, then ends", async () => {
    const run = await finishedRun()
    const controller = new AbortController()
    const res = await fetch(`${h.baseUrl}/v1/runs/${run.id}/events/stream`, {
      headers: { authorization: `Bearer ${h.operatorKey}` },
      signal: controller.signal
    })
    expect(res.status).toBe(200)
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/)
    expect(res.headers.get("x-request-id")).toMatch(/^req_/)
    const { text, ended } = await readRaw(res, () => false)
    expect(ended).toBe(true)
    const blocks = text.split("\n\n").filter((b) => b.length > 0)
    expect(blocks[0]).toMatch(/^retry: \d+$/)
    const eventBlocks = blocks.slice(1).filter((b) => !b.startsWith(":"))
    const stored = await allEvents(h, h.operatorKey, run.id)
    expect(eventBlocks).toHaveLength(stored.length)
    eventBlocks.forEach((block, i) => {
      const lines = block.split("\n")
      expect(lines).toHaveLength(3)
      expect(lines[0]).toBe(`id: ${i + 1}`)
      expect(lines[1]).toBe("event: run_event")
      expect(lines[2]!.startsWith("data: ")).toBe(true)
      const envelope = JSON.parse(lines[2]!.slice("data: ".length))
      expect(Object.keys(envelope).sort()).toEqual(["payload", "seq", "timestamp", "type"])
      expect(envelope).toEqual(stored[i])
    })
    expect(JSON.parse(eventBlocks.at(-1)!.split("\n")[2]!.slice(6)).type).toBe("run.worker.succeeded")
  })

  it("replays a finished run from seq 1 and ends the response", async () => {
    const run = await finishedRun()
    const stream = await openStream(h, h.operatorKey, run.id)
    const events = await stream.readToEnd()
    expectContiguous(seqs(events))
    expect(events).toHaveLength(run.last_seq)
    expect(isTerminalEvent(events.at(-1)!)).toBe(true)
    expect(stream.retries).toHaveLength(1)
    for (const e of events) {
      expect(e.id).toBe(String(e.data.seq))
      expect(e.event).toBe("run_event")
    }
  })

  it("starts after `after_seq` or after `Last-Event-ID`", async () => {
    const run = await finishedRun()
    const fromQuery = await (await openStream(h, h.operatorKey, run.id, { afterSeq: 3 })).readToEnd()
    expectContiguous(seqs(fromQuery), 4)
    expect(fromQuery.at(-1)!.data.seq).toBe(run.last_seq)
    const fromHeader = await (await openStream(h, h.operatorKey, run.id, { lastEventId: "5" })).readToEnd()
    expectContiguous(seqs(fromHeader), 6)
    expect(fromHeader.at(-1)!.data.seq).toBe(run.last_seq)
    const fromZero = await (await openStream(h, h.operatorKey, run.id, { afterSeq: 0 })).readToEnd()
    expectContiguous(seqs(fromZero), 1)
  })

  it("ends at once, with no event, when the client already has the terminal event", async () => {
    const run = await finishedRun()
    const stream = await openStream(h, h.operatorKey, run.id, { lastEventId: String(run.last_seq) })
    expect(await stream.readToEnd()).toEqual([])
    const past = await openStream(h, h.operatorKey, run.id, { afterSeq: run.last_seq + 10 })
    expect(await past.readToEnd()).toEqual([])
  })
})

describe("live streams", () => {
  it("streams a live run to its terminal event, then the server ends the response", async () => {
    const { run, open } = await heldRun(2, 3)
    const stream = await openStream(h, h.operatorKey, run.id)
    const before = await stream.readUntil((e) => e.data.seq === run.last_seq)
    expectContiguous(seqs(before))
    open()
    const rest = await stream.readToEnd()
    const all = [...before, ...rest]
    expectContiguous(seqs(all))
    expect(all.at(-1)!.data.type).toBe("run.worker.succeeded")
    const final = await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    expect(all).toHaveLength(final.last_seq)
  })

  it("resumes a stream cut mid-run with Last-Event-ID: no gap, no duplicate, to the terminal event", async () => {
    const { run, open } = await heldRun(3, 3)
    const first = await openStream(h, h.operatorKey, run.id)
    const k = 4
    const head: SseEvent[] = []
    for (let i = 0; i < k; i++) head.push((await first.next())!)
    first.abort()
    expectContiguous(seqs(head))
    // Reconnect while the run is still held: the rest of the replay, then live events.
    const second = await openStream(h, h.operatorKey, run.id, { lastEventId: head.at(-1)!.id! })
    const replayed = await second.readUntil((e) => e.data.seq === run.last_seq)
    open()
    const live = await second.readToEnd()
    const all = [...head, ...replayed, ...live]
    expectContiguous(seqs(all))
    expect(isTerminalEvent(all.at(-1)!)).toBe(true)
    expect(all.map((e) => e.data)).toEqual(await allEvents(h, h.operatorKey, run.id))
    // And a connection cut while no one listened resumes the same way.
    const third = await openStream(h, h.operatorKey, run.id, { lastEventId: String(run.last_seq) })
    const again = await third.readToEnd()
    expect(again.map((e) => e.data)).toEqual(live.map((e) => e.data))
  })

  it("resumes across any number of reconnects, one event per connection, while the run is live", async () => {
    const { run, open } = await heldRun(2, 4)
    const got: SseEvent[] = []
    let opened = false
    for (let connections = 0; connections < 100; connections++) {
      const last = got.at(-1)?.id
      const stream = await openStream(
        h,
        h.operatorKey,
        run.id,
        last === undefined ? {} : { lastEventId: last }
      )
      const e = await stream.next()
      stream.abort()
      if (e === null) break
      got.push(e)
      if (isTerminalEvent(e)) break
      // Release the run half way, so later connections see events written while none was open.
      if (!opened && got.length === 3) {
        open()
        opened = true
      }
    }
    expectContiguous(seqs(got))
    expect(isTerminalEvent(got.at(-1)!)).toBe(true)
    expect(got.map((e) => e.data)).toEqual(await allEvents(h, h.operatorKey, run.id))
  })

  it("stays open across a wait for input and a signal, to the terminal event", async () => {
    const created = await createRun(h, h.operatorKey, {
      input: { deltas: ["x"], wait: true },
      handler: "stream"
    })
    const stream = await openStream(h, h.operatorKey, created.id)
    const untilWait = await stream.readUntil((e) => e.data.type === "run.awaiting_input")
    expect(untilWait.at(-1)!.data.payload.value).toMatchObject({ prompt: "Continue?" })
    const res = await request(h, "POST", `/v1/runs/${created.id}/signal`, {
      key: h.operatorKey,
      json: { action: "reject" }
    })
    expect(res.status).toBe(202)
    const rest = await stream.readToEnd()
    const all = [...untilWait, ...rest]
    expectContiguous(seqs(all))
    const types = all.map((e) => e.data.type)
    expect(types).toContain("run.signal_received")
    expect(types.at(-1)).toBe("run.worker.succeeded")
  })

  it("ends the stream after run.cancelled when a running run is cancelled", async () => {
    const { run } = await heldRun(1, 0)
    const stream = await openStream(h, h.operatorKey, run.id)
    await stream.readUntil((e) => e.data.seq === run.last_seq)
    expect(
      (await request(h, "POST", `/v1/runs/${run.id}/cancel`, { key: h.operatorKey, json: { reason: "bye" } }))
        .status
    ).toBe(202)
    const rest = await stream.readToEnd()
    expect(rest.at(-1)!.data).toMatchObject({ type: "run.cancelled", payload: { value: { reason: "bye" } } })
    expectContiguous(seqs(rest), run.last_seq + 1)
  })

  it("sends a `: ping` comment line while the run is idle", async () => {
    const { run, open } = await heldRun(1, 0)
    const controller = new AbortController()
    const res = await fetch(`${h.baseUrl}/v1/runs/${run.id}/events/stream?after_seq=${run.last_seq}`, {
      headers: { authorization: `Bearer ${h.operatorKey}` },
      signal: controller.signal
    })
    expect(res.status).toBe(200)
    const { text, ended } = await readRaw(
      res,
      (t) => t.split("\n").some((line) => line.startsWith(":")),
      3000
    )
    controller.abort()
    expect(ended).toBe(false)
    const comment = text.split("\n").find((line) => line.startsWith(":"))!
    expect(comment.trim()).toBe(": ping")
    // The retry hint still came first.
    expect(text.startsWith("retry: ")).toBe(true)
    open()
    await waitForStatus(h, h.operatorKey, run.id, "succeeded")
  })
})

describe("errors before the stream", () => {
  it("answers JSON, not SSE: 401 without or with a bad key, 404 for another customer's run or an unknown one", async () => {
    const { run, open } = await heldRun(1, 0)
    const path = `/v1/runs/${run.id}/events/stream`
    expectError(await request(h, "GET", path), 401, "AUTH_MISSING_HEADER")
    expectError(
      await request(h, "GET", path, { key: "key_abcdefghij:abcdefghijklmnopqrstuvwxyz" }),
      401,
      "AUTH_KEY_INVALID"
    )
    const other = await newCustomer(h)
    expectError(await request(h, "GET", path, { key: other.key }), 404, "RUN_NOT_FOUND")
    expectError(
      await request(h, "GET", "/v1/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV/events/stream", {
        key: h.operatorKey
      }),
      404,
      "RUN_NOT_FOUND"
    )
    expectError(
      await request(h, "GET", "/v1/runs/nope/events/stream", { key: h.operatorKey }),
      404,
      "RUN_NOT_FOUND"
    )
    const readless = await newCustomer(h, ["runs:write"])
    const theirs = await createRun(h, other.key, { input: 1, handler: "parked" })
    expectError(
      await request(h, "GET", `/v1/runs/${theirs.id}/events/stream`, { key: readless.key }),
      403,
      "AUTH_SCOPE_DENIED"
    )
    open()
  })

  it("refuses a Last-Event-ID or after_seq that is not a non-negative integer with 400 JSON", async () => {
    const run = await finishedRun()
    const path = `/v1/runs/${run.id}/events/stream`
    for (const lastEventId of ["abc", "-1", "1.5"])
      expectError(
        await request(h, "GET", path, { key: h.operatorKey, headers: { "last-event-id": lastEventId } }),
        400,
        "VALIDATION_FAILED"
      )
    for (const q of ["abc", "-1"])
      expectError(
        await request(h, "GET", `${path}?after_seq=${q}`, { key: h.operatorKey }),
        400,
        "VALIDATION_FAILED"
      )
  })
})

describe("fan-out", () => {
  it("gives each of 500 concurrent subscribers of a live run every frame in order, then releases them all", async () => {
    const { run, open } = await heldRun(2, 40)
    await eventually(() => h.openFeedSubscriptions() === 0, "earlier tests' streams to be released")
    const streams = await Promise.all(Array.from({ length: 500 }, () => openStream(h, h.operatorKey, run.id)))
    // Every stream has caught up with the log before the rest is written, so the rest reaches them live.
    await Promise.all(streams.map((s) => s.readUntil((e) => e.data.seq === run.last_seq, 20_000)))
    open()
    const tails = await Promise.all(streams.map((s) => s.readToEnd(30_000)))
    const finished = await waitForStatus(h, h.operatorKey, run.id, "succeeded")
    for (const tail of tails) {
      expectContiguous(seqs(tail), run.last_seq + 1)
      expect(tail.at(-1)!.data.seq).toBe(finished.last_seq)
      expect(isTerminalEvent(tail.at(-1)!)).toBe(true)
    }
    // One shared reader served them: it stops once the last of them has left.
    await eventually(() => h.openFeedSubscriptions() === 0, "the 500 finished streams to release the reader")
  }, 60_000)
})

describe("client aborts", () => {
  it("frees the stream's feed subscription when the client goes away; the run and new streams go on", async () => {
    const { run, open } = await heldRun(2, 2)
    await eventually(() => h.openFeedSubscriptions() === 0, "earlier tests' streams to be released")
    const stream = await openStream(h, h.operatorKey, run.id)
    const head = await stream.readUntil((e) => e.data.seq === run.last_seq)
    await eventually(() => h.openFeedSubscriptions() === 1, "the stream's feed subscription")
    stream.abort()
    await eventually(() => h.openFeedSubscriptions() === 0, "the aborted stream to release its subscription")

    // Several aborted streams leave nothing behind either.
    for (let i = 0; i < 5; i++) {
      const s = await openStream(h, h.operatorKey, run.id)
      await s.next()
      s.abort()
    }
    await eventually(() => h.openFeedSubscriptions() === 0, "five aborted streams to release theirs")

    open()
    const resumed = await openStream(h, h.operatorKey, run.id, { lastEventId: head.at(-1)!.id! })
    const tail = await resumed.readToEnd()
    expectContiguous(seqs([...head, ...tail]))
    expect(isTerminalEvent(tail.at(-1)!)).toBe(true)
    await eventually(() => h.openFeedSubscriptions() === 0, "the finished stream to release its subscription")
  })
})
