import { Engine, isTerminalEventType, type Principal, type RunEvent, RunState } from "@baton/core"
import { Effect, Stream } from "effect"
import { describe, expect, it } from "vitest"
import { type Harness, newHandler, newPrincipal } from "../Harness.js"
import { apply, expectGapless, runningRun } from "./helpers.js"

const note = (leaseToken: string, i: number) =>
  RunState.RunCommand.Progress({ leaseToken, items: [{ stepId: null, kind: "note", fields: { i } }] })

/** Reads up to `take` events from a subscription started after `afterSeq`, then disconnects. */
const readSome = (h: Harness, principal: Principal, runId: string, afterSeq: number, take: number) =>
  h.run(
    Effect.flatMap(Engine.subscribe(principal, runId, afterSeq), (stream) =>
      Stream.runCollect(Stream.take(stream, take))
    ).pipe(Effect.map((chunk) => [...chunk]))
  )

export const eventCases = (h: () => Harness) =>
  describe("events", () => {
    it("pages through the log by after_seq and limit", async () => {
      const principal = newPrincipal()
      const run = await runningRun(h(), principal, newHandler())
      for (let i = 0; i < 5; i++) await apply(h(), run.id, note(run.lease_token!, i), run.lease_token)
      const first = await h().run(Engine.readEvents(principal, run.id, { limit: 3 }))
      expect(first.data.map((e) => e.seq)).toEqual([1, 2, 3])
      expect(first.has_more).toBe(true)
      expect(first.next_after_seq).toBe(3)
      const second = await h().run(Engine.readEvents(principal, run.id, { after_seq: 3, limit: 3 }))
      expect(second.data.map((e) => e.seq)).toEqual([4, 5, 6])
      const last = await h().run(Engine.readEvents(principal, run.id, { after_seq: 6, limit: 3 }))
      expect(last.data.map((e) => e.seq)).toEqual([7])
      expect(last.has_more).toBe(false)
      expect(last.next_after_seq).toBe(7)
      expect(first.data[0]).toMatchObject({
        seq: 1,
        type: "run.queued",
        timestamp: expect.stringMatching(/Z$/)
      })
      expect(Object.keys(first.data[0]!).sort()).toEqual(["payload", "seq", "timestamp", "type"])
    })

    it("streams live events and ends after the terminal event", async () => {
      const principal = newPrincipal()
      const run = await runningRun(h(), principal, newHandler())
      const token = run.lease_token!
      const stream = await h().run(Engine.subscribe(principal, run.id, 0))
      const collected = h()
        .run(Stream.runCollect(stream))
        .then((c) => [...c])
      for (let i = 0; i < 10; i++) await apply(h(), run.id, note(token, i), token)
      await apply(
        h(),
        run.id,
        RunState.RunCommand.Succeed({ leaseToken: token, output: { ok: true } }),
        token
      )
      const events = await collected
      expectGapless(events)
      expect(events).toHaveLength(13)
      expect(events.at(-1)?.type).toBe("run.worker.succeeded")
      // A finished run replays and ends; a subscription past its end ends at once.
      expect((await readSome(h(), principal, run.id, 0, 1000)).map((e) => e.seq)).toEqual(
        events.map((e) => e.seq)
      )
      expect(await readSome(h(), principal, run.id, 13, 1000)).toEqual([])
    })

    it("loses and repeats nothing across disconnects and resumes from any seq while appends go on", async () => {
      const principal = newPrincipal()
      const run = await runningRun(h(), principal, newHandler())
      const token = run.lease_token!
      const total = 60
      const writer = (async () => {
        for (let i = 0; i < total; i++) await apply(h(), run.id, note(token, i), token)
        await apply(h(), run.id, RunState.RunCommand.Succeed({ leaseToken: token, output: null }), token)
      })()
      const seen: RunEvent[] = []
      let last = 0
      // Reconnect after a varying number of events each time, resuming after the last one seen.
      for (let round = 0; !seen.some((e) => isTerminalEventType(e.type)); round++) {
        const batch = await readSome(h(), principal, run.id, last, 1 + (round % 7))
        seen.push(...batch)
        last = seen.at(-1)?.seq ?? 0
      }
      await writer
      expectGapless(seen)
      expect(seen).toHaveLength(total + 3)
      expect(seen.filter((e) => isTerminalEventType(e.type))).toHaveLength(1)
    })
  })
