import { DEFAULT_REDACTION_POLICY, Engine, RunState } from "@baton/core"
import { describe, expect, it } from "vitest"
import { type Capabilities, type Harness, newHandler, newPrincipal } from "../Harness.js"
import { apply, claim, createRun, getRecord, readAll, withReason } from "./helpers.js"

export const claimCases = (h: () => Harness, caps: Capabilities) =>
  describe("claim", () => {
    it("takes queued runs of the named handlers, oldest first, at most max, under a fresh lease", async () => {
      const principal = newPrincipal()
      const handler = newHandler()
      const a = await createRun(h(), principal, handler)
      const b = await createRun(h(), principal, handler)
      const c = await createRun(h(), principal, handler)
      const other = await createRun(h(), principal, newHandler())
      const now = Date.now() + 5
      const first = await claim(h(), handler, { max: 2, now, leaseMs: 10_000, workerId: "w-a" })
      expect(first.map((r) => r.id)).toEqual([a.id, b.id])
      for (const r of first) {
        expect(r.status).toBe("running")
        expect(r.worker_id).toBe("w-a")
        expect(r.lease_expires_at).toBe(now + 10_000)
        expect(r.lease_token).toEqual(expect.any(String))
      }
      expect(first[0]!.lease_token).not.toBe(first[1]!.lease_token)
      const events = await readAll(h(), a.id)
      expect(events.map((e) => [e.seq, e.type])).toEqual([
        [1, "run.queued"],
        [2, "run.started"]
      ])
      expect(events[1]!.payload.value).toEqual({ attempt: 1, worker_id: "w-a" })
      // Claimed runs are not claimable while their lease lives.
      const second = await claim(h(), handler, { max: 10, now: now + 1 })
      expect(second.map((r) => r.id)).toEqual([c.id])
      expect(await claim(h(), handler, { max: 10, now: now + 2 })).toEqual([])
      expect((await getRecord(h(), other.id)).status).toBe("queued")
    })

    it("stores a claimed run and its run.started exactly as RunState's Claim decides them, first and later attempts", async () => {
      const handler = newHandler()
      const run = await createRun(h(), newPrincipal(), handler)
      const expectClaimAsDecided = async (now: number, workerId: string) => {
        const before = await getRecord(h(), run.id)
        const [claimed] = await claim(h(), handler, { now, workerId, leaseMs: 7000 })
        const decided = RunState.transition(
          before,
          RunState.RunCommand.Claim({ workerId, leaseToken: claimed!.lease_token!, leaseMs: 7000 }),
          { now, redaction: DEFAULT_REDACTION_POLICY }
        )
        if (decided._tag === "Left" || decided.right._tag !== "Transition") throw new Error("not claimable")
        expect(claimed).toEqual(decided.right.next)
        expect(await getRecord(h(), run.id)).toEqual(decided.right.next)
        const events = await readAll(h(), run.id)
        expect(events.slice(before.last_seq)).toEqual(decided.right.events)
        return claimed!
      }
      const first = await expectClaimAsDecided(Date.now() + 5, "w-first")
      const token = first.lease_token!
      await apply(
        h(),
        run.id,
        RunState.RunCommand.StartStep({ leaseToken: token, stepId: "s:0", name: "s", attempt: 1 }),
        token
      )
      const { run: requeued } = await apply(
        h(),
        run.id,
        RunState.RunCommand.FinishStep({
          leaseToken: token,
          stepId: "s:0",
          outcome: "retry_step",
          error: { message: "flaky" },
          retryInMs: 10,
          requeue: true
        }),
        token
      )
      // Attempt 2 keeps its started_at and deadline from the first.
      const second = await expectClaimAsDecided(requeued.available_at! + 1, "w-second")
      expect(second.usage.attempts).toBe(2)
    })

    it("does not take a run before its available_at (retry backoff)", async () => {
      const handler = newHandler()
      const [run] = await Promise.all([createRun(h(), newPrincipal(), handler)])
      const [claimed] = await claim(h(), handler)
      const token = claimed!.lease_token!
      await apply(
        h(),
        run!.id,
        RunState.RunCommand.StartStep({ leaseToken: token, stepId: "s:0", name: "s", attempt: 1 }),
        token
      )
      const { run: requeued } = await apply(
        h(),
        run!.id,
        RunState.RunCommand.FinishStep({
          leaseToken: token,
          stepId: "s:0",
          outcome: "retry_step",
          error: { message: "flaky" },
          retryInMs: 60_000,
          requeue: true
        }),
        token
      )
      expect(requeued.status).toBe("queued")
      const availableAt = requeued.available_at!
      expect(await claim(h(), handler, { now: availableAt - 1 })).toEqual([])
      const [again] = await claim(h(), handler, { now: availableAt })
      expect(again?.id).toBe(run!.id)
      expect(again?.usage.attempts).toBe(2)
    })

    it("makes a run whose lease expired claimable again, with run.requeued then run.started", async () => {
      const handler = newHandler()
      const run = await createRun(h(), newPrincipal(), handler)
      const [held] = await claim(h(), handler, { workerId: "w-1", leaseMs: 1000 })
      const expiry = held!.lease_expires_at!
      expect(await claim(h(), handler, { workerId: "w-2", now: expiry - 1 })).toEqual([])
      const [taken] = await claim(h(), handler, { workerId: "w-2", now: expiry })
      expect(taken?.id).toBe(run.id)
      expect(taken?.worker_id).toBe("w-2")
      expect(taken?.lease_token).not.toBe(held!.lease_token)
      const events = await h().backdoor.rawEvents(run.id)
      expect(events.map((e) => e.type)).toEqual(["run.queued", "run.started", "run.requeued", "run.started"])
      expect(events[2]!.payload.value).toEqual({ reason: "lease_expired", attempt: 2 })
      expect(events[3]!.payload.value).toEqual({ attempt: 2, worker_id: "w-2" })
    })

    it("ends instead of restarting a run whose cancel was requested before its lease expired", async () => {
      const principal = newPrincipal()
      const handler = newHandler()
      const run = await createRun(h(), principal, handler)
      const [held] = await claim(h(), handler, { leaseMs: 1000 })
      await h().run(Engine.cancelRun(principal, run.id, { reason: "stop" }))
      expect(await claim(h(), handler, { now: held!.lease_expires_at! + 1 })).toEqual([])
      const after = await getRecord(h(), run.id)
      expect(after.status).toBe("cancelled")
      expect((await readAll(h(), run.id)).map((e) => e.type)).toEqual([
        "run.queued",
        "run.started",
        "run.cancel_requested",
        "run.cancelled"
      ])
    })

    it.skipIf(!caps.concurrentWriters)(
      withReason(
        caps.concurrentWriters,
        "gives each run to exactly one of many concurrent claimers",
        "concurrent writers"
      ),
      async () => {
        const principal = newPrincipal()
        const handler = newHandler()
        const runs = await Promise.all(Array.from({ length: 12 }, () => createRun(h(), principal, handler)))
        const now = Date.now() + 5
        const results = await Promise.all(
          Array.from({ length: 16 }, (_, i) => claim(h(), handler, { workerId: `w-${i}`, max: 3, now }))
        )
        const claimed = results.flat()
        expect(claimed).toHaveLength(12)
        expect(new Set(claimed.map((r) => r.id))).toEqual(new Set(runs.map((r) => r.id)))
        for (const run of runs) {
          const events = await readAll(h(), run.id)
          expect(events.filter((e) => e.type === "run.started")).toHaveLength(1)
        }
        // …and after every lease expired, again exactly once each.
        const later = await Promise.all(
          Array.from({ length: 16 }, (_, i) =>
            claim(h(), handler, { workerId: `x-${i}`, max: 3, now: now + 60_000 })
          )
        )
        expect(later.flat()).toHaveLength(12)
        expect(new Set(later.flat().map((r) => r.id)).size).toBe(12)
      }
    )
  })
