import { Appended, Conflict, type RunRecord, RunState, RunStore } from "@baton/core"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { type Capabilities, type Harness, newHandler, newPrincipal } from "../Harness.js"
import {
  apply,
  applyEither,
  claim,
  expectGapless,
  getRecord,
  readAll,
  runningRun,
  startStep,
  withReason
} from "./helpers.js"

const progress = (leaseToken: string, stepId: string, text: string) =>
  RunState.RunCommand.Progress({
    leaseToken,
    items: [{ stepId, kind: "content_delta", fields: { content_delta: text } }]
  })

export const appendCases = (h: () => Harness, caps: Capabilities) =>
  describe("append", () => {
    it("appends events with contiguous seqs and applies the patch, version + 1", async () => {
      const run = await runningRun(h(), newPrincipal(), newHandler())
      const token = run.lease_token!
      await startStep(h(), run, "s:0")
      const after = await getRecord(h(), run.id)
      expect(after.version).toBe(run.version + 1)
      expect(after.last_seq).toBe(run.last_seq + 1)
      expect(after.open_steps).toEqual({ "s:0": { name: "s", attempt: 1 } })
      expect(after.usage.steps).toBe(1)
      // The lease survives a patch that does not name it.
      expect(after.lease_token).toBe(token)
      expect(after.lease_expires_at).toBe(run.lease_expires_at)
      const raw = (await h().backdoor.rawRun(run.id)) as RunRecord
      expect(raw).toMatchObject({
        version: after.version,
        last_seq: after.last_seq,
        open_steps: after.open_steps
      })
      const events = await h().backdoor.rawEvents(run.id)
      expectGapless(events)
      expect(events.at(-1)).toMatchObject({ type: "step.started", seq: after.last_seq })
    })

    it("sets patch keys whose value is null and leaves absent keys untouched", async () => {
      const run = await runningRun(h(), newPrincipal(), newHandler())
      const store = (f: (s: RunStore["Type"]) => Effect.Effect<unknown, unknown>) =>
        h().run(Effect.flatMap(RunStore, f) as Effect.Effect<unknown, never, never>)
      const result = await store((s) =>
        s.append(run.id, { version: run.version, leaseToken: run.lease_token }, [], {
          worker_id: null,
          timer_at: 42
        })
      )
      expect(result).toEqual(Appended)
      const after = await getRecord(h(), run.id)
      expect(after.worker_id).toBeNull()
      expect(after.timer_at).toBe(42)
      expect(after.status).toBe("running")
      expect(after.lease_token).toBe(run.lease_token)
      expect(after.version).toBe(run.version + 1)
      expect(after.last_seq).toBe(run.last_seq)
    })

    it("refuses a stale version or a wrong lease token and writes nothing", async () => {
      const run = await runningRun(h(), newPrincipal(), newHandler())
      const event = (seq: number) => ({
        run_id: run.id,
        seq,
        type: "step.progress",
        timestamp: Date.now(),
        payload: { redacted: false, value: { step_id: null, kind: "note" } }
      })
      const append = (version: number, leaseToken: string | null) =>
        h().run(
          Effect.flatMap(RunStore, (s) =>
            s.append(run.id, { version, leaseToken }, [event(run.last_seq + 1)], {
              last_seq: run.last_seq + 1
            })
          )
        )
      expect(await append(run.version - 1, run.lease_token)).toEqual(Conflict)
      expect(await append(run.version + 1, run.lease_token)).toEqual(Conflict)
      expect(await append(run.version, "not-the-lease")).toEqual(Conflict)
      const unknown = await h().run(
        Effect.flatMap(RunStore, (s) =>
          s.append("run_00000000000000000000000000", { version: 1, leaseToken: null }, [], {})
        )
      )
      expect(unknown).toEqual(Conflict)
      expect(await h().backdoor.rawEvents(run.id)).toHaveLength(run.last_seq)
      expect(((await h().backdoor.rawRun(run.id)) as RunRecord).version).toBe(run.version)
      // The right version and token go through.
      expect(await append(run.version, run.lease_token)).toEqual(Appended)
      expectGapless(await h().backdoor.rawEvents(run.id))
    })

    it("fences a worker whose lease was taken over: its writes are refused with LEASE_LOST", async () => {
      const handler = newHandler()
      const first = await runningRun(h(), newPrincipal(), handler)
      const [second] = await claim(h(), handler, { workerId: "worker-2", now: first.lease_expires_at! + 1 })
      expect(second?.id).toBe(first.id)
      expect(second?.lease_token).not.toBe(first.lease_token)
      const stale = await applyEither(
        h(),
        first.id,
        RunState.RunCommand.Succeed({ leaseToken: first.lease_token!, output: "late" }),
        first.lease_token
      )
      expect(stale._tag).toBe("Left")
      if (stale._tag === "Left") expect(stale.left).toMatchObject({ reason_code: "LEASE_LOST" })
      const events = await readAll(h(), first.id)
      expect(events.map((e) => e.type)).not.toContain("run.worker.succeeded")
      expect((await getRecord(h(), first.id)).status).toBe("running")
    })

    it("renews a lease without bumping the version, and refuses a lost one", async () => {
      const run = await runningRun(h(), newPrincipal(), newHandler())
      const now = Date.now() + 10
      const renewed = await h().run(
        Effect.flatMap(RunStore, (s) => s.renewLease(run.id, run.lease_token!, 60_000, now))
      )
      expect(renewed?.lease_expires_at).toBe(now + 60_000)
      expect(renewed?.version).toBe(run.version)
      expect(((await h().backdoor.rawRun(run.id)) as RunRecord).lease_expires_at).toBe(now + 60_000)
      const lost = await h().run(Effect.flatMap(RunStore, (s) => s.renewLease(run.id, "wrong", 60_000, now)))
      expect(lost).toBeNull()
      await apply(
        h(),
        run.id,
        RunState.RunCommand.Succeed({ leaseToken: run.lease_token!, output: 1 }),
        run.lease_token
      )
      const afterEnd = await h().run(
        Effect.flatMap(RunStore, (s) => s.renewLease(run.id, run.lease_token!, 60_000, now))
      )
      expect(afterEnd).toBeNull()
    })

    it.skipIf(!caps.concurrentWriters)(
      withReason(
        caps.concurrentWriters,
        "keeps seq gapless and unique under 50 concurrent appenders on one run",
        "concurrent writers"
      ),
      async () => {
        const run = await runningRun(h(), newPrincipal(), newHandler())
        const token = run.lease_token!
        await startStep(h(), run, "s:0")
        await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            apply(h(), run.id, progress(token, "s:0", `delta-${i}`), token)
          )
        )
        const events = await h().backdoor.rawEvents(run.id)
        expectGapless(events)
        const deltas = events
          .filter((e) => e.type === "step.progress")
          .map((e) => (e.payload.value as { content_delta: string }).content_delta)
        expect(new Set(deltas).size).toBe(50)
        const after = await getRecord(h(), run.id)
        expect(after.last_seq).toBe(events.length)
        expect(after.version).toBe(run.version + 51)
      }
    )
  })
